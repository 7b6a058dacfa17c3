//! A tiny token server for the registry's `auth: token` mode (Docker's token spec).
//!
//! It checks Basic credentials (GET) or the OAuth2 password grant (POST), then issues an
//! RS256 JWT with the requested scopes. Distribution 2.8 verifies such a token through the
//! `x5c` header: the signing certificate must chain to `rootcertbundle`; ours is
//! self-signed and is the bundle. Issuer, audience (`aud` = service, a string as 2.8
//! expects), `exp`/`nbf` and `access` are checked by the registry. The key and certificate
//! are made with the `openssl` CLI at start, and tokens are signed with
//! `openssl dgst -sha256 -sign` (PKCS#1 v1.5), so no crypto crate is needed. Every request
//! is logged for assertions.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use super::tools;

/// One request the token server answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The user whose credentials were presented, if any.
    pub user: Option<String>,
    pub service: Option<String>,
    pub scopes: Vec<String>,
    /// True when the credentials were right and a token was issued.
    pub granted: bool,
}

pub struct TokenServer {
    pub addr: SocketAddr,
    pub service: String,
    pub issuer: String,
    /// The self-signed certificate: the registry's `rootcertbundle`.
    pub cert_pem: PathBuf,
    state: Arc<TokenState>,
}

struct TokenState {
    user: String,
    password: String,
    key_pem: PathBuf,
    /// Base64 (standard) DER of the certificate, for the `x5c` header.
    x5c: String,
    service: String,
    issuer: String,
    log: Mutex<Vec<TokenRequest>>,
    serial: AtomicU64,
}

impl TokenServer {
    /// Makes a key and certificate under `dir` and serves `/token` on a free port.
    pub fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        std::fs::create_dir_all(dir).expect("token dir");
        let key_pem = dir.join("key.pem");
        let cert_pem = dir.join("cert.pem");
        tools::run(
            tools::command("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=hoist-test-token-issuer"])
                .arg("-keyout")
                .arg(&key_pem)
                .arg("-out")
                .arg(&cert_pem),
        );
        let der = tools::run(
            tools::command("openssl")
                .args(["x509", "-outform", "DER", "-in"])
                .arg(&cert_pem),
        )
        .stdout;
        let state = Arc::new(TokenState {
            user: user.into(),
            password: password.into(),
            key_pem,
            x5c: STANDARD.encode(der),
            service: "hoist-test-registry".into(),
            issuer: "hoist-test-token-issuer".into(),
            log: Mutex::new(Vec::new()),
            serial: AtomicU64::new(1),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind token server");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/token", axum::routing::get(issue).post(issue))
            .with_state(state.clone());
        super::bg().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            axum::serve(listener, app).await.expect("token server");
        });
        TokenServer {
            addr,
            service: state.service.clone(),
            issuer: state.issuer.clone(),
            cert_pem,
            state,
        }
    }

    /// The realm URL the registry names in its `WWW-Authenticate` challenge.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.log.lock().unwrap().clone()
    }
}

/// Query or form pairs, decoded.
fn pairs(encoded: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{encoded}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

async fn issue(
    State(st): State<Arc<TokenState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut params = pairs(query.as_deref().unwrap_or(""));
    if method == Method::POST {
        params.extend(pairs(&String::from_utf8_lossy(&body)));
    }
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();

    // GET: Basic credentials; POST: the OAuth2 password grant
    let presented: Option<(String, String)> =
        if method == Method::POST && get("grant_type").as_deref() == Some("password") {
            get("username").zip(get("password"))
        } else {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|b| STANDARD.decode(b.trim()).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        };
    let granted = presented
        .as_ref()
        .is_some_and(|(u, p)| *u == st.user && *p == st.password);
    st.log.lock().unwrap().push(TokenRequest {
        user: presented.as_ref().map(|(u, _)| u.clone()),
        service: get("service"),
        scopes: scopes.clone(),
        granted,
    });
    if !granted {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"hoist-test-token\"")],
            axum::Json(json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})),
        )
            .into_response();
    }

    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|a| matches!(*a, "pull" | "push" | "delete" | "*"))
                .collect();
            Some(json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": st.issuer,
        "sub": st.user,
        "aud": st.service,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("hoist-test-{}", st.serial.fetch_add(1, Ordering::Relaxed)),
        "access": access,
    });
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [st.x5c]});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = match sign(&st.key_pem, signing_input.as_bytes()).await {
        Ok(sig) => sig,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("signing failed: {e}"),
            )
                .into_response();
        }
    };
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
    axum::Json(json!({
        "token": token,
        "access_token": token,
        "expires_in": 300,
        "issued_at": humantime_now(now),
    }))
    .into_response()
}

/// RS256: RSASSA-PKCS1-v1_5 over SHA-256, by the openssl CLI.
async fn sign(key: &Path, input: &[u8]) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(tools::require("openssl"))
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(out.stdout)
}

/// RFC 3339 UTC for `issued_at`, from Unix seconds (civil-from-days, no time crate needed).
fn humantime_now(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
