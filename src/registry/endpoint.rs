//! The hosts a request about one registry may go to, read afresh from `HOIST_HOSTS_DIR`
//! for every operation: mirrors in order, then the origin, each with its TLS client.
//!
//! The rule of who is asked: a tag only by hosts with `resolve`, content by digest by
//! hosts with `pull`, pushes by the origin alone; the origin is always last. A mirror is
//! asked once (no retries, so a dead one costs one refused connection) and any failure of
//! it sends the request on to the next host; the origin keeps the full retry policy.
//! Every request to a mirror carries `?ns=<registry>`. Not for: parsing the folders
//! (`hosts_config`), TLS clients (`tls`).

use std::sync::Arc;

use reqwest::Url;

use super::hosts_config::{HostSettings, RegistrySettings};
use super::transport::Transport;
use super::{Reference, RegistryError};

/// One host with the client that speaks to it.
pub(super) struct Endpoint {
    pub settings: HostSettings,
    pub http: reqwest::Client,
    /// The registry the content belongs to, sent as `?ns=` to mirrors (None: the origin).
    pub ns: Option<String>,
}

impl Endpoint {
    /// `host[:port]`, as messages, metrics and `layers[].source` name it.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn is_origin(&self) -> bool {
        self.settings.origin
    }

    /// The URL of `path` (relative to the API root, e.g. `REPO/manifests/TAG`).
    pub fn url(&self, path: &str) -> Result<Url, RegistryError> {
        let mut url = self
            .settings
            .api
            .join(path)
            .map_err(|e| RegistryError::Protocol(format!("bad request path {path:?}: {e}")))?;
        if let Some(ns) = &self.ns {
            url.query_pairs_mut().append_pair("ns", ns);
        }
        Ok(url)
    }
}

/// What an operation needs of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Need {
    /// A tag to a digest.
    Resolve,
    /// Manifests and blobs by digest.
    Pull,
}

/// The hosts for one registry, origin last.
pub(super) struct Endpoints {
    hosts: Vec<Arc<Endpoint>>,
}

impl Endpoints {
    pub fn origin(&self) -> &Arc<Endpoint> {
        self.hosts.last().expect("the origin is always there")
    }

    /// The hosts to try for `need`, in order; the origin always, and last.
    pub fn for_need(&self, need: Need) -> Vec<Arc<Endpoint>> {
        self.hosts
            .iter()
            .filter(|h| {
                h.is_origin()
                    || match need {
                        Need::Resolve => h.settings.capabilities.resolve,
                        Need::Pull => h.settings.capabilities.pull,
                    }
            })
            .cloned()
            .collect()
    }
}

impl Transport {
    /// The settings in force for `registry`, read now (for `GET /registries/{host}`).
    pub async fn settings(&self, reference: &Reference) -> Result<RegistrySettings, RegistryError> {
        let dirs = self.hosts_dirs.clone();
        let insecure = self.insecure.clone();
        let (registry, api_host) = (reference.registry.clone(), reference.api_host().to_string());
        tokio::task::spawn_blocking(move || dirs.settings(&registry, &api_host, &insecure))
            .await
            .map_err(|e| RegistryError::Protocol(format!("reading HOIST_HOSTS_DIR: {e}")))?
            .map_err(|message| RegistryError::HostsConfig { message })
    }

    /// The hosts for `reference`'s registry with their clients, read now.
    pub async fn endpoints(&self, reference: &Reference) -> Result<Endpoints, RegistryError> {
        let settings = self.settings(reference).await?;
        let pool = self.tls.clone();
        let registry = reference.registry.clone();
        let hosts = tokio::task::spawn_blocking(move || {
            settings
                .hosts
                .into_iter()
                .map(|h| {
                    let http = pool.client(&h.tls)?;
                    let ns = (!h.origin).then(|| registry.clone());
                    Ok(Arc::new(Endpoint {
                        settings: h,
                        http,
                        ns,
                    }))
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .await
        .map_err(|e| RegistryError::Protocol(format!("setting up TLS: {e}")))?
        .map_err(|message| RegistryError::HostsConfig { message })?;
        Ok(Endpoints { hosts })
    }

    /// The origin alone (pushes).
    pub async fn origin(&self, reference: &Reference) -> Result<Arc<Endpoint>, RegistryError> {
        Ok(self.endpoints(reference).await?.origin().clone())
    }
}

/// True when a mirror's failure should send the request on to the next host: anything
/// but a cancel or a failure of our own sink.
pub(super) fn worth_next_host(e: &RegistryError) -> bool {
    !matches!(
        e,
        RegistryError::Cancelled | RegistryError::Write { .. } | RegistryError::HostsConfig { .. }
    )
}

/// Runs `attempt` against each host in turn until one answers: a mirror's failure is
/// logged and the next host asked; the origin's (the last host) is the answer.
pub(super) async fn each_host<T, F, Fut>(
    hosts: &[Arc<Endpoint>],
    reference: &Reference,
    what: &str,
    mut attempt: F,
) -> Result<T, RegistryError>
where
    F: FnMut(Arc<Endpoint>) -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    let mut last = None;
    for host in hosts {
        match attempt(host.clone()).await {
            Ok(v) => return Ok(v),
            Err(e) if !host.is_origin() && worth_next_host(&e) => {
                tracing::warn!(registry = %reference.registry, mirror = %host.name(), error = %e, "{what}: mirror failed; asking the next host");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| RegistryError::Protocol(format!("no host to ask for {reference}"))))
}
