//! Answering a registry's challenge: the `Authorization` header for a Bearer challenge
//! (a token from the realm, cached per host, scopes and credentials) or a Basic one.
//!
//! Credentials come from the request, else from Docker's config; they go only to the
//! token realm (HTTPS, or a host allowed plain HTTP) and the registry. Not for: deciding
//! when to authenticate (the transport does, on a 401).

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderValue};

use super::auth::{self, TokenKey};
use super::challenge::Challenge;
use super::error_map::{unauthorized, url_for_humans};
use super::transport::{Request, SendError, Transport, read_limited};
use super::{Credentials, RegistryError};

const MAX_TOKEN_ANSWER: usize = 1 << 20;

impl Transport {
    /// For the origin: the request's own credentials, else Docker's configuration for the
    /// registry. For a mirror: Docker's configuration for the mirror's own host, never
    /// the origin's credentials.
    pub(super) async fn creds_for(
        &self,
        req: &Request<'_>,
    ) -> Result<Option<Credentials>, RegistryError> {
        if !req.host.is_origin() {
            return self.docker.credentials(req.host.name()).await;
        }
        match req.creds {
            Some(c) => Ok(Some(c.clone())),
            None => self.docker.credentials(&req.reference.registry).await,
        }
    }

    /// The `Authorization` header answering `ch` (and the token's cache key, for Bearer).
    pub(super) async fn authorize(
        &self,
        ch: &Challenge,
        req: &Request<'_>,
    ) -> Result<(Option<HeaderValue>, Option<TokenKey>), RegistryError> {
        let creds = self.creds_for(req).await?;
        let secret = |v: String| {
            let mut h = HeaderValue::from_str(&v).map_err(|_| {
                RegistryError::Protocol("credentials contain bytes not allowed in a header".into())
            })?;
            h.set_sensitive(true);
            Ok::<_, RegistryError>(h)
        };
        match ch.scheme.as_str() {
            "bearer" => {
                let key = TokenKey::new(req.host.name(), &req.scopes, creds.as_ref());
                let token = match self.tokens.get(&key) {
                    Some(t) => t,
                    None => self.fetch_token(ch, req, creds.as_ref(), &key).await?,
                };
                Ok((Some(secret(format!("Bearer {token}"))?), Some(key)))
            }
            "basic" => match creds {
                Some(c) => {
                    let raw = format!("{}:{}", c.username, c.password);
                    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
                    Ok((Some(secret(format!("Basic {b64}"))?), None))
                }
                None => Ok((None, None)),
            },
            _ => Ok((None, None)),
        }
    }

    async fn fetch_token(
        &self,
        ch: &Challenge,
        req: &Request<'_>,
        creds: Option<&Credentials>,
        key: &TokenKey,
    ) -> Result<String, RegistryError> {
        let registry = &req.reference.registry;
        let tr = auth::token_request(ch, &req.scopes, creds, &self.insecure)
            .map_err(|e| RegistryError::Protocol(format!("registry {registry}: {e}")))?;
        let resp = self
            .with_retries(req.host.name(), self.retry.attempts, true, || async {
                let mut rb = match &tr.form {
                    Some(form) => req
                        .host
                        .http
                        .post(tr.url.clone())
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(form.clone()),
                    None => req.host.http.get(tr.url.clone()),
                };
                if let Some(c) = creds.filter(|c| !c.is_identity_token()) {
                    rb = rb.basic_auth(&c.username, Some(&c.password));
                }
                let resp = rb
                    .send()
                    .await
                    .map_err(|e| SendError::Net(e, tr.url.clone()))?;
                self.counters.count(
                    &super::hosts::url_host_port(&tr.url),
                    resp.status().as_u16(),
                );
                Ok(resp)
            })
            .await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(unauthorized(req.reference, &req.scopes, creds.is_some()));
        }
        if status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Denied {
                registry: registry.clone(),
                scope: auth::scopes_string(&req.scopes),
            });
        }
        let url = url_for_humans(&tr.url);
        let body = read_limited(resp, MAX_TOKEN_ANSWER, registry, &url).await?;
        if !status.is_success() {
            return Err(RegistryError::Http {
                registry: registry.clone(),
                url,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(200).collect(),
            });
        }
        let token = auth::parse_token_response(&body, time::OffsetDateTime::now_utc())
            .map_err(|e| RegistryError::Protocol(format!("token endpoint {url}: {e}")))?;
        self.tokens.put(key.clone(), &token);
        Ok(token.token)
    }
}
