//! Which registry hosts hoist speaks plain HTTP to, and the origin rule for credentials.
//!
//! Plain HTTP is for loopback (`localhost`, `127.0.0.0/8`, `::1`) and the operator's
//! `HOIST_INSECURE_REGISTRIES`; everything else is HTTPS. The same rule decides whether a
//! token realm may be contacted over `http://`. Not for: TLS settings (the client's).

use std::net::{IpAddr, Ipv4Addr};

use reqwest::Url;

/// Splits `host[:port]` (`[::1]:5000`, `::1`, `h.io`) into host (brackets removed) and port.
fn split_host_port(host_port: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host_port.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => (rest, None),
        };
    }
    if host_port.matches(':').count() > 1 {
        return (host_port, None); // a bare IPv6 address
    }
    match host_port.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host_port, None),
    }
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.octets()[0] == Ipv4Addr::LOCALHOST.octets()[0],
        Ok(IpAddr::V6(v6)) => v6.is_loopback(),
        Err(_) => false,
    }
}

/// True when `host_port` may be spoken to over plain HTTP: loopback, or listed in
/// `insecure` as `host` (any port) or `host:port` (that port only).
pub(super) fn plain_http_allowed(host_port: &str, insecure: &[String]) -> bool {
    let (host, port) = split_host_port(host_port);
    if is_loopback(host) {
        return true;
    }
    insecure.iter().any(|entry| {
        let (e_host, e_port) = split_host_port(entry.trim());
        e_host.eq_ignore_ascii_case(host) && (e_port.is_none() || e_port == port)
    })
}

/// `https://host[:port]` or `http://…` for the registry API at `host_port`.
pub(super) fn base_url(host_port: &str, insecure: &[String]) -> Result<Url, String> {
    let scheme = if plain_http_allowed(host_port, insecure) {
        "http"
    } else {
        "https"
    };
    Url::parse(&format!("{scheme}://{host_port}/"))
        .map_err(|e| format!("registry host {host_port:?} is not a valid URL host: {e}"))
}

/// `host[:port]` of a URL, as `plain_http_allowed` expects it.
pub(super) fn url_host_port(url: &Url) -> String {
    // `host_str` keeps the brackets of an IPv6 address.
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// Same scheme, host and port: the only place an `Authorization` header may go.
pub(super) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_always_plain_http() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.9.8.7:1",
            "[::1]:5000",
            "::1",
            "LOCALHOST",
        ] {
            assert!(plain_http_allowed(h, &[]), "{h}");
        }
        for h in [
            "128.0.0.1",
            "10.0.0.1:5000",
            "registry-1.docker.io",
            "localhost.evil.com",
            "[::2]:5000",
        ] {
            assert!(!plain_http_allowed(h, &[]), "{h}");
        }
    }

    #[test]
    fn insecure_entries_match_with_or_without_port() {
        let insecure = vec!["reg.lan".to_string(), "other.lan:5000".to_string()];
        assert!(plain_http_allowed("reg.lan", &insecure));
        assert!(plain_http_allowed("reg.lan:8080", &insecure));
        assert!(plain_http_allowed("other.lan:5000", &insecure));
        assert!(!plain_http_allowed("other.lan:5001", &insecure));
        assert!(!plain_http_allowed("other.lan", &insecure));
        assert!(!plain_http_allowed("sub.reg.lan", &insecure));
    }

    #[test]
    fn base_url_picks_the_scheme() {
        assert_eq!(
            base_url("ghcr.io", &[]).unwrap().as_str(),
            "https://ghcr.io/"
        );
        assert_eq!(
            base_url("127.0.0.1:5000", &[]).unwrap().as_str(),
            "http://127.0.0.1:5000/"
        );
        assert_eq!(
            base_url("[::1]:5000", &[]).unwrap().as_str(),
            "http://[::1]:5000/"
        );
        assert!(base_url("bad host", &[]).is_err());
    }

    #[test]
    fn origin_compares_scheme_host_and_port() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://h.io/v2/"),
            &u("https://h.io:443/x")
        ));
        assert!(!same_origin(&u("https://h.io/"), &u("http://h.io/")));
        assert!(!same_origin(&u("https://h.io/"), &u("https://cdn.h.io/")));
        assert!(!same_origin(&u("http://h:5000/"), &u("http://h:5001/")));
        assert_eq!(url_host_port(&u("http://[::1]:5000/x")), "[::1]:5000");
        assert_eq!(
            url_host_port(&u("https://auth.docker.io/token")),
            "auth.docker.io"
        );
    }
}
