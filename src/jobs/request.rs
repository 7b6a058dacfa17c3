//! Job requests as clients send them, and their validated forms.
//!
//! Validation happens once, when a job is submitted (a bad request is a 400, never a
//! failed job), and again when a job is re-queued after a restart.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{PathError, resolve_in_roots};
use crate::image::{ConfigOverrides, ImageError};
use crate::oci::{Compression, Format};
use crate::registry::{Credentials, Platform, Reference, ReferenceError};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    #[default]
    Use,
    Bypass,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    #[default]
    Rootfs,
    Git,
    Oci,
}

/// `POST /pulls` body. `auth` is never serialized: the stored request has no credentials.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    pub image: String,
    pub dest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub cache: CacheMode,
    #[serde(default)]
    pub layout: Layout,
    /// Flush the tree to disk before it is swapped into `dest` (false: a power loss soon
    /// after may leave `dest` with empty or missing files; a killed daemon does not).
    #[serde(default = "yes")]
    pub sync: bool,
    #[serde(default, skip_serializing)]
    pub auth: Option<Credentials>,
}

fn yes() -> bool {
    true
}

/// Why a request was refused before becoming a job.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("{reason}")]
    Platform { value: String, reason: String },
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("destination {0} already exists; set \"force\": true to replace it")]
    DestExists(PathBuf),
    #[error("source: {0}")]
    Source(PathError),
    #[error("source {0} is not a folder")]
    SourceNotFolder(PathBuf),
    #[error("target {0}: give a tag to push to, not a digest")]
    TargetDigest(String),
    #[error("source and target are both {0}; give another tag or repository as target")]
    SameSourceAndTarget(String),
    #[error(transparent)]
    Config(#[from] ImageError),
    #[error("{0}")]
    Invalid(String),
}

impl crate::error::ErrorCode for RequestError {
    fn code(&self) -> &'static str {
        match self {
            RequestError::Reference(_) => "invalid_reference",
            RequestError::Platform { .. } => "invalid_platform",
            RequestError::Path(e) => e.code(),
            RequestError::DestExists(_) => "dest_exists",
            RequestError::Source(PathError::OutsideRoots { .. } | PathError::IsRoot(_)) => {
                "source_outside_roots"
            }
            RequestError::Source(_) | RequestError::SourceNotFolder(_) => "invalid_source",
            RequestError::TargetDigest(_) => "invalid_reference",
            RequestError::SameSourceAndTarget(_) => "same_source_and_target",
            RequestError::Config(e) => e.code(),
            RequestError::Invalid(_) => "invalid_request",
        }
    }
}

/// A pull request, validated.
#[derive(Clone, Debug)]
pub struct PullSpec {
    pub reference: Reference,
    pub platform: Option<Platform>,
    pub dest: PathBuf,
    pub force: bool,
    pub cache: CacheMode,
    pub layout: Layout,
    pub sync: bool,
}

impl PullRequest {
    pub fn validate(&self, roots: &[PathBuf]) -> Result<PullSpec, RequestError> {
        let reference: Reference = self.image.trim().parse()?;
        let platform = self
            .platform
            .as_deref()
            .map(|p| {
                p.parse::<Platform>()
                    .map_err(|reason| RequestError::Platform {
                        value: p.to_string(),
                        reason,
                    })
            })
            .transpose()?;
        let dest = resolve_in_roots(roots, &self.dest)?;
        Ok(PullSpec {
            reference,
            platform,
            dest,
            force: self.force,
            cache: self.cache,
            layout: self.layout,
            sync: self.sync,
        })
    }
}

/// Parses an optional platform query value the way requests do.
pub fn parse_platform(value: Option<&str>) -> Result<Option<Platform>, RequestError> {
    value
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<Platform>()
                .map_err(|reason| RequestError::Platform {
                    value: p.to_string(),
                    reason,
                })
        })
        .transpose()
}

/// Layer compression a build may ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildCompression {
    #[default]
    Gzip,
    Zstd,
}

impl From<BuildCompression> for Compression {
    fn from(c: BuildCompression) -> Compression {
        match c {
            BuildCompression::Gzip => Compression::Gzip,
            BuildCompression::Zstd => Compression::Zstd,
        }
    }
}

/// `POST /builds` body. `auth` and `base_auth` are never serialized.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRequest {
    pub source: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default)]
    pub config: ConfigOverrides,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub compression: BuildCompression,
    /// Record the files' owners instead of 0:0.
    #[serde(default)]
    pub keep_owners: bool,
    /// Clamp mtimes and set `created` to this time (seconds), for reproducible builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<u64>,
    #[serde(default, skip_serializing)]
    pub auth: Option<Credentials>,
    #[serde(default, skip_serializing)]
    pub base_auth: Option<Credentials>,
}

/// A build request, validated.
#[derive(Clone, Debug)]
pub struct BuildSpec {
    pub source: PathBuf,
    pub target: Reference,
    pub base: Option<Reference>,
    pub config: ConfigOverrides,
    pub platform: Option<Platform>,
    pub format: Format,
    pub compression: BuildCompression,
    pub keep_owners: bool,
    pub source_date_epoch: Option<u64>,
}

impl BuildRequest {
    pub fn validate(&self, roots: &[PathBuf]) -> Result<BuildSpec, RequestError> {
        let source = resolve_in_roots(roots, &self.source).map_err(RequestError::Source)?;
        let target: Reference = self.target.trim().parse()?;
        if target.digest.is_some() {
            return Err(RequestError::TargetDigest(self.target.clone()));
        }
        let base = self
            .base
            .as_deref()
            .map(|b| b.trim().parse::<Reference>())
            .transpose()?;
        self.config.validate()?;
        if self.format == Format::Docker && self.compression == BuildCompression::Zstd {
            return Err(RequestError::Invalid(
                "format docker has no zstd layer type (skopeo and podman refuse such images); \
                 use format oci for zstd, or compression gzip"
                    .into(),
            ));
        }
        if let Some(epoch) = self.source_date_epoch
            && epoch_rfc3339(epoch).is_none()
        {
            return Err(RequestError::Invalid(format!(
                "source_date_epoch {epoch} is not a time an image can record (years 1970 to 9999)"
            )));
        }
        Ok(BuildSpec {
            source,
            target,
            base,
            config: self.config.clone(),
            platform: parse_platform(self.platform.as_deref())?,
            format: self.format,
            compression: self.compression,
            keep_owners: self.keep_owners,
            source_date_epoch: self.source_date_epoch,
        })
    }
}

/// RFC 3339 form of a `SOURCE_DATE_EPOCH`, if it has one (years up to 9999).
pub fn epoch_rfc3339(epoch: u64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(epoch).ok()?).ok()?;
    if t.year() > 9999 {
        return None;
    }
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The platforms of a copy: `"all"` (the whole index, byte for byte), or a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CopyPlatforms {
    /// Must be `"all"`.
    Keyword(String),
    List(Vec<String>),
}

impl Default for CopyPlatforms {
    fn default() -> Self {
        CopyPlatforms::Keyword("all".into())
    }
}

/// Platforms one copy may name.
pub const COPY_PLATFORMS_MAX: usize = 64;

/// `POST /copies` body. `auth` (source) and `target_auth` are never serialized.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyRequest {
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub platforms: CopyPlatforms,
    #[serde(default)]
    pub cache: CacheMode,
    /// Also copy the referrers (signatures, SBOMs, attestations) of what is copied.
    #[serde(default)]
    pub referrers: bool,
    #[serde(default, skip_serializing)]
    pub auth: Option<Credentials>,
    #[serde(default, skip_serializing)]
    pub target_auth: Option<Credentials>,
}

/// A copy request, validated.
#[derive(Clone, Debug)]
pub struct CopySpec {
    pub source: Reference,
    pub target: Reference,
    /// `None`: all of them.
    pub platforms: Option<Vec<Platform>>,
    pub cache: CacheMode,
    pub referrers: bool,
}

impl CopySpec {
    /// A retag: the target is another tag of the source's own repository, so every blob
    /// and child manifest is there already.
    pub fn is_retag(&self) -> bool {
        self.source.registry == self.target.registry
            && self.source.repository == self.target.repository
    }
}

impl CopyRequest {
    pub fn validate(&self) -> Result<CopySpec, RequestError> {
        let source: Reference = self.source.trim().parse()?;
        let target: Reference = self.target.trim().parse()?;
        if target.digest.is_some() {
            return Err(RequestError::TargetDigest(self.target.clone()));
        }
        if source.digest.is_none()
            && source.registry == target.registry
            && source.repository == target.repository
            && source.tag == target.tag
        {
            return Err(RequestError::SameSourceAndTarget(target.to_string()));
        }
        let platforms = match &self.platforms {
            CopyPlatforms::Keyword(k) if k == "all" => None,
            CopyPlatforms::Keyword(k) => {
                return Err(RequestError::Invalid(format!(
                    "platforms {}: give \"all\" or a list such as [\"linux/amd64\"]",
                    crate::text::quote(k.as_bytes())
                )));
            }
            CopyPlatforms::List(list) if list.is_empty() => {
                return Err(RequestError::Invalid(
                    "platforms is an empty list: give \"all\" or at least one platform".into(),
                ));
            }
            CopyPlatforms::List(list) if list.len() > COPY_PLATFORMS_MAX => {
                return Err(RequestError::Invalid(format!(
                    "platforms lists {} entries, at most {COPY_PLATFORMS_MAX} are taken",
                    list.len()
                )));
            }
            CopyPlatforms::List(list) => {
                let mut parsed: Vec<Platform> = Vec::with_capacity(list.len());
                for p in list {
                    let platform =
                        parse_platform(Some(p))?.ok_or_else(|| RequestError::Platform {
                            value: p.clone(),
                            reason: "empty platform in platforms".into(),
                        })?;
                    if parsed.contains(&platform) {
                        return Err(RequestError::Platform {
                            value: p.clone(),
                            reason: format!("platform {platform} is listed twice"),
                        });
                    }
                    parsed.push(platform);
                }
                Some(parsed)
            }
        };
        Ok(CopySpec {
            source,
            target,
            platforms,
            cache: self.cache,
            referrers: self.referrers,
        })
    }
}
