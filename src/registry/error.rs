//! Errors of the registry client, each with a stable machine-readable code. Values that
//! come from the registry (bodies, platform lists, media types) are quoted cut short.

use crate::digest::Digest;

/// A value the registry sent, cut short for a message.
fn quote(remote: &str) -> String {
    crate::text::quote(remote.as_bytes())
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("manifest {reference} not found in {registry}")]
    ManifestUnknown { registry: String, reference: String },
    #[error("repository {repository} not found in {registry}")]
    NameUnknown {
        registry: String,
        repository: String,
    },
    #[error("blob {digest} not found in {repository}")]
    BlobUnknown { repository: String, digest: Digest },
    #[error("registry {registry} answered 401 unauthorized for {scope}{hint}")]
    Unauthorized {
        registry: String,
        scope: String,
        hint: String,
    },
    #[error("registry {registry} denied access to {scope}")]
    Denied { registry: String, scope: String },
    #[error("image {image} has no manifest for platform {platform} (it has: {})", quote(.available))]
    PlatformNotFound {
        image: String,
        platform: String,
        available: String,
    },
    #[error("{what} from {image}: expected {expected}, got {actual}")]
    DigestMismatch {
        image: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{image}: unsupported manifest: {}", quote(.reason))]
    UnsupportedManifest { image: String, reason: String },
    #[error("registry {registry} answered {status} for {url}: {}", quote(.body))]
    Http {
        registry: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("registry {registry} is unreachable: {message}")]
    Unreachable { registry: String, message: String },
    #[error("registry {registry} kept answering 429 too many requests")]
    TooManyRequests { registry: String },
    #[error("credential helper {helper} for {registry} failed: {message}")]
    CredentialHelper {
        helper: String,
        registry: String,
        message: String,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("writing blob {digest}: {source}")]
    Write {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
    /// An upload that failed on the way and could not be picked up where the registry
    /// has it; `cause` is the failure itself (and gives the code).
    #[error(
        "upload of blob {digest} to {registry} failed at byte {at} and cannot be resumed ({why}): {cause}"
    )]
    UploadNotResumed {
        registry: String,
        digest: Digest,
        at: u64,
        why: String,
        cause: Box<RegistryError>,
    },
    /// A `hosts.toml` or certificate file of `HOIST_HOSTS_DIR` that cannot be used; the
    /// message names the file (and the line).
    #[error("invalid registry host settings: {message}")]
    HostsConfig { message: String },
    #[error("TLS with {host} failed: {problem}")]
    Tls { host: String, problem: String },
}

/// Single flight hands one error to every caller: each gets its own copy. The only
/// variant that is not plain data, `Write`, gets an `io::Error` of the same kind and text.
impl Clone for RegistryError {
    fn clone(&self) -> Self {
        use RegistryError::*;
        match self {
            ManifestUnknown {
                registry,
                reference,
            } => ManifestUnknown {
                registry: registry.clone(),
                reference: reference.clone(),
            },
            NameUnknown {
                registry,
                repository,
            } => NameUnknown {
                registry: registry.clone(),
                repository: repository.clone(),
            },
            BlobUnknown { repository, digest } => BlobUnknown {
                repository: repository.clone(),
                digest: digest.clone(),
            },
            Unauthorized {
                registry,
                scope,
                hint,
            } => Unauthorized {
                registry: registry.clone(),
                scope: scope.clone(),
                hint: hint.clone(),
            },
            Denied { registry, scope } => Denied {
                registry: registry.clone(),
                scope: scope.clone(),
            },
            PlatformNotFound {
                image,
                platform,
                available,
            } => PlatformNotFound {
                image: image.clone(),
                platform: platform.clone(),
                available: available.clone(),
            },
            DigestMismatch {
                image,
                what,
                expected,
                actual,
            } => DigestMismatch {
                image: image.clone(),
                what: what.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            },
            UnsupportedManifest { image, reason } => UnsupportedManifest {
                image: image.clone(),
                reason: reason.clone(),
            },
            Http {
                registry,
                url,
                status,
                body,
            } => Http {
                registry: registry.clone(),
                url: url.clone(),
                status: *status,
                body: body.clone(),
            },
            Unreachable { registry, message } => Unreachable {
                registry: registry.clone(),
                message: message.clone(),
            },
            TooManyRequests { registry } => TooManyRequests {
                registry: registry.clone(),
            },
            CredentialHelper {
                helper,
                registry,
                message,
            } => CredentialHelper {
                helper: helper.clone(),
                registry: registry.clone(),
                message: message.clone(),
            },
            Protocol(message) => Protocol(message.clone()),
            Write { digest, source } => Write {
                digest: digest.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Cancelled => Cancelled,
            UploadNotResumed {
                registry,
                digest,
                at,
                why,
                cause,
            } => UploadNotResumed {
                registry: registry.clone(),
                digest: digest.clone(),
                at: *at,
                why: why.clone(),
                cause: cause.clone(),
            },
            HostsConfig { message } => HostsConfig {
                message: message.clone(),
            },
            Tls { host, problem } => Tls {
                host: host.clone(),
                problem: problem.clone(),
            },
        }
    }
}

impl crate::error::ErrorCode for RegistryError {
    /// The stable code the API puts in problem+json and in a failed job's `error.code`.
    fn code(&self) -> &'static str {
        match self {
            RegistryError::ManifestUnknown { .. } => "manifest_unknown",
            RegistryError::NameUnknown { .. } => "name_unknown",
            RegistryError::BlobUnknown { .. } => "blob_unknown",
            RegistryError::Unauthorized { .. } => "unauthorized",
            RegistryError::Denied { .. } => "denied",
            RegistryError::PlatformNotFound { .. } => "platform_not_found",
            RegistryError::DigestMismatch { .. } => "digest_mismatch",
            RegistryError::UnsupportedManifest { .. } => "unsupported_manifest",
            RegistryError::Http { .. } => "registry_error",
            RegistryError::Unreachable { .. } => "registry_unreachable",
            RegistryError::TooManyRequests { .. } => "too_many_requests",
            RegistryError::CredentialHelper { .. } => "credential_helper_failed",
            RegistryError::Protocol(_) => "registry_protocol_error",
            RegistryError::Write { .. } => "io_error",
            RegistryError::Cancelled => crate::error::CANCELLED,
            RegistryError::UploadNotResumed { cause, .. } => cause.code(),
            RegistryError::HostsConfig { .. } => "invalid_hosts_config",
            RegistryError::Tls { .. } => "tls_error",
        }
    }
}
