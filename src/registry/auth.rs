//! Registry authentication: Bearer token flow (challenge → token endpoint, scoped, cached
//! until expiry) and Basic. Credentials are never logged or persisted.
//!
//! This file holds the pieces: credentials, `WWW-Authenticate` parsing, scopes, the token
//! request and its answer, and the token cache. The transport drives them on a 401.
//! Not for: where credentials come from (see `docker_config`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Url;

use super::challenge::Challenge;
use super::hosts;

/// A username and password (or token) for one registry, for one job.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: <redacted> }}",
            self.username
        )
    }
}

/// Docker's marker username for an identity (OAuth2 refresh) token in the password.
pub(super) const IDENTITY_TOKEN_USER: &str = "<token>";

impl Credentials {
    /// A stable, non-reversible name for these credentials, to key cached tokens (and the
    /// mirror's access answers) by.
    pub fn identity(&self) -> String {
        let mut h = crate::digest::Hasher::new(crate::digest::Algorithm::Sha256);
        h.update(self.username.as_bytes());
        h.update(b"\0");
        h.update(self.password.as_bytes());
        h.finish().hex()[..16].to_string()
    }

    pub(super) fn is_identity_token(&self) -> bool {
        self.username == IDENTITY_TOKEN_USER
    }
}

/// Access to one repository: `repository:REPO:pull` or `repository:REPO:pull,push`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Scope {
    pub repository: String,
    pub push: bool,
}

impl Scope {
    pub fn pull(repository: &str) -> Scope {
        Scope {
            repository: repository.to_string(),
            push: false,
        }
    }
    pub fn push(repository: &str) -> Scope {
        Scope {
            repository: repository.to_string(),
            push: true,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actions = if self.push { "pull,push" } else { "pull" };
        write!(f, "repository:{}:{actions}", self.repository)
    }
}

/// The scopes of a request as one string, for messages and cache keys.
pub(super) fn scopes_string(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// What to send to a Bearer challenge's realm for a token.
pub(super) struct TokenRequest {
    pub url: Url,
    /// `application/x-www-form-urlencoded` body of an OAuth2 refresh-token POST.
    pub form: Option<String>,
}

/// Builds the token request for `challenge`. The realm must be HTTPS unless its host is one
/// hoist speaks plain HTTP to; with an identity token, the OAuth2 POST form is used.
pub(super) fn token_request(
    challenge: &Challenge,
    scopes: &[Scope],
    creds: Option<&Credentials>,
    insecure: &[String],
) -> Result<TokenRequest, String> {
    let realm = challenge
        .param("realm")
        .ok_or("bearer challenge has no realm")?;
    let mut url =
        Url::parse(realm).map_err(|e| format!("token realm {realm:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if hosts::plain_http_allowed(&hosts::url_host_port(&url), insecure) => {}
        _ => {
            return Err(format!(
                "token realm {realm:?} is not https; refusing to send credentials there \
                 (list its host in HOIST_INSECURE_REGISTRIES if that is intended)"
            ));
        }
    }
    let service = challenge.param("service");
    if let Some(c) = creds.filter(|c| c.is_identity_token()) {
        let mut form = Url::parse("x:").expect("static URL");
        {
            let mut q = form.query_pairs_mut();
            q.append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", &c.password)
                .append_pair("client_id", "hoist");
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", &scopes_string(scopes));
        }
        return Ok(TokenRequest {
            url,
            form: form.query().map(str::to_string),
        });
    }
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = service {
            q.append_pair("service", s);
        }
        for scope in scopes {
            q.append_pair("scope", &scope.to_string());
        }
    }
    Ok(TokenRequest { url, form: None })
}

/// A token and how long it stays good from now.
#[derive(Debug)]
pub(super) struct Token {
    pub token: String,
    pub lifetime: Duration,
}

/// Reads a token endpoint's JSON: `token` or `access_token`, `expires_in` (default 60 s),
/// `issued_at` (RFC 3339; time already passed since then is taken off, if plausible).
pub(super) fn parse_token_response(
    body: &[u8],
    now: time::OffsetDateTime,
) -> Result<Token, String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
        issued_at: Option<String>,
    }
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| format!("token answer is not valid JSON: {e}"))?;
    let token = raw
        .token
        .filter(|t| !t.is_empty())
        .or(raw.access_token.filter(|t| !t.is_empty()))
        .ok_or("token answer has neither token nor access_token")?;
    let mut lifetime = Duration::from_secs(raw.expires_in.filter(|&s| s > 0).unwrap_or(60));
    let issued = raw.issued_at.as_deref().and_then(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    });
    if let Some(issued) = issued {
        let elapsed = now - issued;
        if elapsed.is_positive() && elapsed < lifetime {
            lifetime -= elapsed.unsigned_abs();
        }
    }
    Ok(Token { token, lifetime })
}

/// Bearer tokens per (registry host, scopes, credential identity), kept until shortly
/// before they expire.
#[derive(Default)]
pub(super) struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, (String, Instant)>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct TokenKey {
    pub host: String,
    pub scopes: String,
    pub identity: String,
}

impl TokenKey {
    pub fn new(host: &str, scopes: &[Scope], creds: Option<&Credentials>) -> TokenKey {
        TokenKey {
            host: host.to_string(),
            scopes: scopes_string(scopes),
            identity: creds.map_or_else(|| "anonymous".to_string(), Credentials::identity),
        }
    }
}

impl TokenCache {
    pub fn get(&self, key: &TokenKey) -> Option<String> {
        let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, until)| *until > now);
        map.get(key).map(|(t, _)| t.clone())
    }

    /// Keeps `token` until a safety margin (a tenth of its life, at most 10 s) before expiry.
    pub fn put(&self, key: TokenKey, token: &Token) {
        let margin = (token.lifetime / 10).min(Duration::from_secs(10));
        let until = Instant::now() + token.lifetime - margin;
        let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key, (token.token.clone(), until));
    }

    pub fn remove(&self, key: &TokenKey) {
        let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_render_for_pull_and_push() {
        assert_eq!(
            Scope::pull("library/ubuntu").to_string(),
            "repository:library/ubuntu:pull"
        );
        assert_eq!(Scope::push("a/b").to_string(), "repository:a/b:pull,push");
        assert_eq!(
            scopes_string(&[Scope::push("a"), Scope::pull("b")]),
            "repository:a:pull,push repository:b:pull"
        );
    }

    fn bearer(realm: &str) -> Challenge {
        Challenge {
            scheme: "bearer".into(),
            params: vec![
                ("realm".into(), realm.into()),
                ("service".into(), "reg.io".into()),
            ],
        }
    }

    #[test]
    fn token_request_carries_service_and_scopes() {
        let r = token_request(
            &bearer("https://auth.io/token?x=1"),
            &[Scope::push("a/b"), Scope::pull("c")],
            None,
            &[],
        )
        .unwrap();
        assert_eq!(
            r.url.as_str(),
            "https://auth.io/token?x=1&service=reg.io&scope=repository%3Aa%2Fb%3Apull%2Cpush&scope=repository%3Ac%3Apull"
        );
        assert!(r.form.is_none());
    }

    #[test]
    fn token_realm_over_plain_http_only_for_allowed_hosts() {
        let Err(e) = token_request(&bearer("http://auth.example.com/token"), &[], None, &[]) else {
            panic!("plain-http realm accepted")
        };
        assert!(e.contains("http://auth.example.com/token"), "{e}");
        assert!(token_request(&bearer("http://127.0.0.1:9/token"), &[], None, &[]).is_ok());
        assert!(
            token_request(
                &bearer("http://auth.lan/t"),
                &[],
                None,
                &["auth.lan".into()]
            )
            .is_ok()
        );
        assert!(token_request(&bearer("ftp://x/t"), &[], None, &[]).is_err());
        let no_realm = Challenge {
            scheme: "bearer".into(),
            params: vec![],
        };
        assert!(token_request(&no_realm, &[], None, &[]).is_err());
    }

    #[test]
    fn identity_token_uses_the_oauth2_form() {
        let creds = Credentials {
            username: IDENTITY_TOKEN_USER.into(),
            password: "refresh-me".into(),
        };
        let r = token_request(
            &bearer("https://auth.io/token"),
            &[Scope::pull("a")],
            Some(&creds),
            &[],
        )
        .unwrap();
        let form = r.form.unwrap();
        assert!(form.contains("grant_type=refresh_token"), "{form}");
        assert!(form.contains("refresh_token=refresh-me"), "{form}");
        assert!(form.contains("scope=repository%3Aa%3Apull"), "{form}");
        assert_eq!(r.url.as_str(), "https://auth.io/token");
    }

    #[test]
    fn token_answers_and_lifetimes() {
        let now = time::macros::datetime!(2024-01-01 12:00:00 UTC);
        let t = parse_token_response(br#"{"token":"a","expires_in":300}"#, now).unwrap();
        assert_eq!(
            (t.token.as_str(), t.lifetime),
            ("a", Duration::from_secs(300))
        );
        let t = parse_token_response(br#"{"access_token":"b"}"#, now).unwrap();
        assert_eq!(
            (t.token.as_str(), t.lifetime),
            ("b", Duration::from_secs(60))
        );
        let t = parse_token_response(br#"{"token":"","access_token":"c","expires_in":300,"issued_at":"2024-01-01T11:59:00Z"}"#, now).unwrap();
        assert_eq!(
            (t.token.as_str(), t.lifetime),
            ("c", Duration::from_secs(240))
        );
        // A clock skewed beyond the lifetime: trust expires_in alone.
        let t = parse_token_response(
            br#"{"token":"d","expires_in":60,"issued_at":"2020-01-01T00:00:00Z"}"#,
            now,
        )
        .unwrap();
        assert_eq!(t.lifetime, Duration::from_secs(60));
        assert!(parse_token_response(br#"{"expires_in":1}"#, now).is_err());
        assert!(parse_token_response(b"<html>", now).is_err());
    }

    #[test]
    fn token_cache_keys_by_identity_and_expires() {
        let cache = TokenCache::default();
        let alice = Credentials {
            username: "alice".into(),
            password: "pw".into(),
        };
        let key_a = TokenKey::new("h", &[Scope::pull("r")], Some(&alice));
        let key_anon = TokenKey::new("h", &[Scope::pull("r")], None);
        assert_ne!(key_a, key_anon);
        assert!(!key_a.identity.contains("pw"));
        cache.put(
            key_a.clone(),
            &Token {
                token: "t".into(),
                lifetime: Duration::from_secs(60),
            },
        );
        assert_eq!(cache.get(&key_a).as_deref(), Some("t"));
        assert_eq!(cache.get(&key_anon), None);
        cache.put(
            key_anon.clone(),
            &Token {
                token: "u".into(),
                lifetime: Duration::ZERO,
            },
        );
        assert_eq!(cache.get(&key_anon), None);
        cache.remove(&key_a);
        assert_eq!(cache.get(&key_a), None);
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let c = Credentials {
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
    }
}
