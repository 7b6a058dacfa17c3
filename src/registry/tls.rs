//! TLS per registry host: one `reqwest::Client` (one connection pool) per distinct
//! [`TlsSettings`], built the first time they are used and kept, and the words for a
//! certificate problem.
//!
//! Extra roots are added to the system's, never replace them; a client certificate is the
//! first of the host's; `skip_verify` turns verification off for that host alone (the
//! transport logs a warning each time it is used). The key of a client includes the
//! files' versions, so a renewed certificate gets a new client. Not for: which host to ask
//! (`endpoint`), reading `hosts.toml` (`hosts_config`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::hosts_config::{FileRef, TlsSettings};

/// Idle connections kept per registry host. Enough for the workers' parallel downloads to
/// reuse their connections; a burst beyond it (many requests at once) closes the extra
/// ones as they finish instead of keeping every one of them open.
const IDLE_PER_HOST: usize = 8;
/// An idle connection is closed after this long. hyper checks every this often, so one
/// may live up to twice as long (reqwest's default of 90 s kept them for up to 3 min).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Certificate and key files are a few KiB; anything larger is not one.
const MAX_PEM_FILE: u64 = 1 << 20;
/// Distinct TLS settings kept at once; past it the oldest versions are forgotten.
const MAX_CLIENTS: usize = 64;

/// The settings every client shares; TLS is what differs between them.
fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(IDLE_PER_HOST)
        .pool_idle_timeout(IDLE_TIMEOUT)
}

pub(super) struct TlsPool {
    /// The system roots only: every host without settings of its own.
    plain: reqwest::Client,
    clients: Mutex<HashMap<TlsSettings, reqwest::Client>>,
}

impl TlsPool {
    pub fn new() -> Result<TlsPool, String> {
        Ok(TlsPool {
            plain: builder()
                .build()
                .map_err(|e| format!("cannot set up the HTTP client: {e}"))?,
            clients: Mutex::default(),
        })
    }

    /// The client for `tls`, made now if these settings (in these files' versions) are
    /// new. `Err`: which file could not be used, and why.
    pub fn client(&self, tls: &TlsSettings) -> Result<reqwest::Client, String> {
        if *tls == TlsSettings::default() {
            return Ok(self.plain.clone());
        }
        if let Some(c) = self.lock().get(tls) {
            return Ok(c.clone());
        }
        let client = build(tls)?;
        let mut clients = self.lock();
        if clients.len() >= MAX_CLIENTS {
            // Settings that changed leave their old versions behind; they go first.
            clients.retain(|k, _| !same_files(k, tls));
            if clients.len() >= MAX_CLIENTS {
                clients.clear();
            }
        }
        clients.insert(tls.clone(), client.clone());
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TlsSettings, reqwest::Client>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn same_files(a: &TlsSettings, b: &TlsSettings) -> bool {
    let paths = |t: &TlsSettings| {
        let mut v: Vec<_> = t.ca.iter().map(|f| f.path.clone()).collect();
        v.extend(t.client.iter().map(|c| c.cert.path.clone()));
        v
    };
    paths(a) == paths(b) && a.skip_verify == b.skip_verify
}

fn read_pem(file: &FileRef) -> Result<Vec<u8>, String> {
    let path = &file.path;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_PEM_FILE {
        return Err(format!(
            "{}: {} bytes, more than {MAX_PEM_FILE} for a PEM file",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn build(tls: &TlsSettings) -> Result<reqwest::Client, String> {
    let mut b = builder();
    let mut roots = Vec::new();
    for file in &tls.ca {
        let pem = read_pem(file)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: not PEM certificates: {e}", file.path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in it", file.path.display()));
        }
        roots.extend(certs);
    }
    if !roots.is_empty() {
        b = b.tls_certs_merge(roots);
    }
    if let Some(client) = tls.client.first() {
        let mut pem = read_pem(&client.cert)?;
        if let Some(key) = &client.key {
            pem.push(b'\n');
            pem.extend(read_pem(key)?);
        }
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!(
                "{}: not a PEM certificate and key: {e}",
                client.cert.path.display()
            )
        })?;
        b = b.identity(identity);
    }
    if tls.skip_verify {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| format!("cannot set up TLS with these settings: {e}"))
}

/// What went wrong in a TLS handshake, for people (`None`: not a TLS problem).
pub(super) fn problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    const ADD_CA: &str = "add its CA as `ca` in hosts.toml, or as ca.crt in the host's \
                          folder of HOIST_HOSTS_DIR";
    const ADD_CLIENT: &str = "set `client` in hosts.toml, or NAME.cert and NAME.key in the \
                              host's folder of HOIST_HOSTS_DIR";
    let (kind, detail) = failure(e)?;
    Some(match kind {
        "UnknownIssuer" => format!("certificate signed by an unknown issuer ({ADD_CA})"),
        "NotValidForName" => "certificate name mismatch: it is not valid for this host".into(),
        "Expired" => "certificate expired".into(),
        "NotValidYet" => "certificate not valid yet".into(),
        "ClientRefused" => format!(
            "the server refused our client certificate, or wants one ({detail}; {ADD_CLIENT})"
        ),
        "Certificate" => format!("invalid certificate: {detail}"),
        _ => format!("TLS handshake failed: {detail}"),
    })
}

/// With TLS 1.3 a server checks the client's certificate after the handshake: when it
/// refuses it (or wanted one), its alert races our first request, which then often meets
/// a closed connection instead. Such an end of an `https` request gets this hint.
pub(super) fn closed_hint(url: &reqwest::Url, chain: &str) -> &'static str {
    let lower = chain.to_ascii_lowercase();
    let closed = [
        "broken pipe",
        "connection reset",
        // hyper: "connection closed before message completed", or a request still
        // queued on the connection: "operation was canceled: connection closed".
        "connection closed",
    ]
    .iter()
    .any(|w| lower.contains(w));
    if url.scheme() == "https" && closed {
        " (a registry that wants a client certificate, or refuses ours, closes TLS \
         connections like this: set `client` in hosts.toml, or NAME.cert and NAME.key in the \
         host's folder of HOIST_HOSTS_DIR)"
    } else {
        ""
    }
}

/// The kind of a TLS failure in `e`'s chain, and its own words. Read from rustls' words
/// (`invalid peer certificate: …`, `received fatal alert: …`): between reqwest, hyper-util
/// and tokio-rustls the `rustls::Error` is wrapped where `source` cannot reach it.
fn failure(e: &(dyn std::error::Error + 'static)) -> Option<(&'static str, String)> {
    words(&super::error_map::error_chain(e))
}

fn words(text: &str) -> Option<(&'static str, String)> {
    if let Some(at) = text.find("invalid peer certificate: ") {
        let what = text[at + "invalid peer certificate: ".len()..].to_string();
        // The `Debug` name of a bare variant, or the `Display` of one with context.
        let kind = [
            ("UnknownIssuer", "UnknownIssuer"),
            ("NotValidForName", "NotValidForName"),
            ("certificate not valid for name", "NotValidForName"),
            ("Expired", "Expired"),
            ("certificate expired", "Expired"),
            ("NotValidYet", "NotValidYet"),
            ("certificate not valid yet", "NotValidYet"),
        ]
        .into_iter()
        .find(|(words, _)| what.starts_with(words))
        .map_or("Certificate", |(_, kind)| kind);
        return Some((kind, what));
    }
    if let Some(at) = text.find("received fatal alert: ") {
        let what = text[at..].to_string();
        let client = [
            "CertificateRequired",
            "BadCertificate",
            "UnknownCA",
            "CertificateUnknown",
        ]
        .iter()
        .any(|a| what.contains(a));
        return Some((if client { "ClientRefused" } else { "Handshake" }, what));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_words_become_a_kind() {
        let kind = |t: &str| words(t).map(|(k, _)| k);
        let connect = "error sending request: client error (Connect): ";
        for (text, want) in [
            (
                "invalid peer certificate: UnknownIssuer",
                Some("UnknownIssuer"),
            ),
            (
                "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; \
                 certificate is only valid for DnsName(\"elsewhere.example\")",
                Some("NotValidForName"),
            ),
            (
                "invalid peer certificate: certificate expired: verification time 1, but \
                 certificate is not valid after 0",
                Some("Expired"),
            ),
            (
                "invalid peer certificate: BadSignature",
                Some("Certificate"),
            ),
            (
                "received fatal alert: CertificateRequired",
                Some("ClientRefused"),
            ),
            ("received fatal alert: HandshakeFailure", Some("Handshake")),
            ("tcp connect error: Connection refused", None),
        ] {
            assert_eq!(kind(&format!("{connect}{text}")), want, "{text}");
        }
        let said = problem(&std::io::Error::other(format!(
            "{connect}invalid peer certificate: UnknownIssuer"
        )))
        .unwrap();
        assert!(
            said.contains("unknown issuer") && said.contains("ca.crt"),
            "{said}"
        );
    }

    #[test]
    fn a_closed_https_connection_hints_at_the_client_certificate() {
        let https = reqwest::Url::parse("https://127.0.0.1:5000/v2/").unwrap();
        let http = reqwest::Url::parse("http://127.0.0.1:5000/v2/").unwrap();
        for chain in [
            // What a request queued on a connection the server closed after its alert says.
            "error sending request: client error (Canceled): operation was canceled: \
             connection closed",
            "error sending request: client error (SendRequest): connection closed before \
             message completed",
            "error sending request: client error (SendRequest): connection error: \
             Connection reset by peer (os error 104)",
            "error sending request: broken pipe",
        ] {
            assert!(
                closed_hint(&https, chain).contains("client certificate"),
                "{chain}"
            );
            assert_eq!(closed_hint(&http, chain), "", "{chain}");
        }
        let refused = "error sending request: client error (Connect): tcp connect error: \
                       Connection refused (os error 111)";
        assert_eq!(closed_hint(&https, refused), "");
    }
}
