//! The `hosts.toml` format (containerd's): what a file says, checked, with the line of
//! any error. Paths are kept as written; `hosts_config` resolves them against the folder
//! and combines the file with Docker's certificate files. Unknown keys (containerd's
//! `header`, `dial_timeout`) are ignored.

use std::collections::BTreeMap;

use reqwest::Url;
use serde::Deserialize;

/// `hosts.toml` as written (paths not resolved yet).
#[derive(Clone, Debug, Deserialize)]
pub(super) struct RawFile {
    pub server: Option<String>,
    #[serde(flatten)]
    pub top: RawHost,
    #[serde(default)]
    pub host: BTreeMap<String, RawHost>,
    /// The `[host."URL"]` keys in file order (from a second parse, which keeps order).
    #[serde(skip)]
    pub order: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct RawHost {
    pub capabilities: Option<Vec<Capability>>,
    pub ca: Option<OneOrMany>,
    pub client: Option<ClientField>,
    pub skip_verify: Option<bool>,
    pub override_path: Option<bool>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Capability {
    Pull,
    Resolve,
    Push,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// containerd's `client`: `"combined.pem"`, or a list of `"combined.pem"` or
/// `["cert", "key"]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ClientField {
    One(String),
    Many(Vec<ClientEntry>),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ClientEntry {
    Combined(String),
    Pair(Vec<String>),
}

/// Parses a `hosts.toml`; errors say the line.
pub(super) fn parse(text: &str) -> Result<RawFile, String> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let mut raw: RawFile = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => format!("line {}: {}", line_of(span.start), e.message().trim()),
        None => e.message().trim().to_string(),
    })?;
    #[derive(Deserialize)]
    struct Order {
        #[serde(default)]
        host: toml::Table,
    }
    let order: Order = toml::from_str(text).map_err(|e| e.message().to_string())?;
    raw.order = order.host.keys().cloned().collect();
    for key in &raw.order {
        if let Err(e) = host_url(key, false) {
            let line = text.find(key.as_str()).map_or(1, line_of);
            return Err(format!("line {line}: [host.{key:?}]: {e}"));
        }
    }
    if let Some(server) = &raw.server
        && let Err(e) = host_url(server, false)
    {
        let line = text.find(server.as_str()).map_or(1, line_of);
        return Err(format!("line {line}: server = {server:?}: {e}"));
    }
    Ok(raw)
}

/// The API root of a host URL: `…/v2/` appended unless `override_path` (containerd's rule).
pub(super) fn host_url(url: &str, override_path: bool) -> Result<Url, String> {
    let mut u = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("the scheme must be http or https".into());
    }
    if u.host_str().is_none() || !u.username().is_empty() || u.password().is_some() {
        return Err(
            "give a host, and no user or password (credentials go in DOCKER_CONFIG)".into(),
        );
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("a host URL has no query or fragment".into());
    }
    let mut path = u.path().trim_end_matches('/').to_string();
    if !override_path && !path.ends_with("/v2") {
        path.push_str("/v2");
    }
    path.push('/');
    u.set_path(&path);
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_urls_get_v2_unless_override_path() {
        let u = |s: &str, o: bool| host_url(s, o).map(|u| u.to_string());
        assert_eq!(u("https://m.io", false).unwrap(), "https://m.io/v2/");
        assert_eq!(u("https://m.io/v2", false).unwrap(), "https://m.io/v2/");
        assert_eq!(
            u("https://m.io/base/", false).unwrap(),
            "https://m.io/base/v2/"
        );
        assert_eq!(
            u("https://a.io/api/docker/repo", true).unwrap(),
            "https://a.io/api/docker/repo/"
        );
        for bad in [
            "ftp://m.io",
            "https://u:p@m.io",
            "https://m.io/?x=1",
            "m.io",
        ] {
            assert!(u(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_of_containerd_that_hoist_does_not_use_are_ignored() {
        let raw = parse(
            "server = \"https://r.io\"\n[host.\"https://m.io\"]\n  dial_timeout = \"5s\"\n  \
             [host.\"https://m.io\".header]\n    x-custom = \"1\"\n",
        )
        .unwrap();
        assert_eq!(raw.order, ["https://m.io"]);
    }
}
