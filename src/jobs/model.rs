//! The job as clients see it, and the events that carry its changes to listeners: wire
//! types, serialized as the API answers them. The typed results (`PullResult`,
//! `BuildResult`) are shared with the CLI, which reads them back. Not for: the stored
//! row's queries (`table.rs`) or requests (`request.rs`).

use crate::unpack::Warnings;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::oci::{Descriptor, MediaType};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Pull,
    Build,
    Copy,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Pull => "pull",
            JobKind::Build => "build",
            JobKind::Copy => "copy",
        }
    }
    pub fn parse(s: &str) -> Option<JobKind> {
        match s {
            "pull" => Some(JobKind::Pull),
            "build" => Some(JobKind::Build),
            "copy" => Some(JobKind::Copy),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True once the job can change no more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// How far a running job got. Byte counts are of blobs as transferred (compressed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub phase: String,
    pub layers_done: u64,
    pub layers_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Per layer (or blob) of the job, in manifest order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerProgress>,
}

/// Progress of one layer: `state` is `waiting`, `downloading`, `cached`, `downloaded`,
/// `extracting`, `done` (pulls) or `pushing`, `exists`, `mounted`, `pushed` (builds and
/// copies; a copy's blobs that are fetched into the cache first are `downloading` then).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerProgress {
    pub digest: String,
    pub size: u64,
    pub bytes_done: u64,
    pub state: String,
}

/// Why a job failed: a stable code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

/// The longest message a job row keeps, in bytes (then cut, and marked so). The rooms
/// already quote untrusted values short; this is the backstop for any error from
/// anywhere (a registry's body, a name in a layer) that would make a big row, log line
/// and `GET /jobs/{id}`.
pub const MESSAGE_MAX: usize = 4096;

impl JobError {
    /// `message` is cut to [`MESSAGE_MAX`] bytes.
    pub fn new(code: &str, message: impl Into<String>) -> JobError {
        JobError {
            code: code.to_string(),
            message: crate::text::truncate(message.into(), MESSAGE_MAX),
        }
    }
}

/// A succeeded pull's `result`: what was pulled, and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullResult {
    /// The reference as asked for, normalized.
    pub image: String,
    /// The image manifest's digest.
    pub digest: Digest,
    /// The index's digest when the reference named a multi-platform index, else null.
    pub index_digest: Option<Digest>,
    pub dest: PathBuf,
    pub platform: String,
    pub layers: Vec<ResultLayer>,
    /// What the daemon, not being root, could not create as the layers say (device nodes,
    /// owners of symlinks, privileged xattrs): a count and the first messages. Left out
    /// when there is nothing to say.
    #[serde(default, skip_serializing_if = "Warnings::is_empty")]
    pub warnings: Warnings,
}

/// A succeeded build's `result`: what was pushed, and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildResult {
    pub target: String,
    /// The pushed manifest's digest.
    pub digest: Digest,
    /// The pushed manifest's media type.
    pub media_type: MediaType,
    pub platform: String,
    pub config_digest: Digest,
    /// Every layer of the image (the base's, then the new one).
    pub layers: Vec<ResultLayer>,
    /// The new layer's uncompressed digest.
    pub diff_id: Digest,
}

/// A succeeded copy's `result`: what was copied where, and how each blob got there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyResult {
    pub source: String,
    pub target: String,
    /// The digest the target's tag now names: the source's own (all platforms, or one),
    /// or that of the new index of the platforms asked for.
    pub digest: Digest,
    pub media_type: MediaType,
    /// Blobs of each manifest pushed, by how they got into the target.
    pub blobs: BlobCounts,
    /// Bytes of the blobs uploaded (neither skipped nor mounted).
    pub bytes_copied: u64,
    /// Manifests PUT (children, referrers and the tagged one).
    pub manifests: u64,
}

/// How a copy's blobs got into the target: `copied` (uploaded), `mounted` (linked from the
/// source repository on the same registry), `skipped` (the target had them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobCounts {
    pub copied: u64,
    pub mounted: u64,
    pub skipped: u64,
}

/// One layer of a job's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultLayer {
    pub digest: Digest,
    pub size: u64,
    pub media_type: MediaType,
    /// Pulls: the host that served the layer (`host[:port]`, a mirror or the origin), or
    /// `cache` when it was already there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl From<&Descriptor> for ResultLayer {
    fn from(d: &Descriptor) -> ResultLayer {
        ResultLayer {
            digest: d.digest.clone(),
            size: d.size,
            media_type: d.media_type.clone(),
            source: None,
        }
    }
}

/// A job, exactly as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    pub status: JobStatus,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub request: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

/// A change to one job, broadcast to `?wait=` and `/events` listeners.
#[derive(Clone, Debug)]
pub enum JobEvent {
    /// The job's status changed; the job as it now is.
    State(Box<Job>),
    /// Progress of a running job.
    Progress { id: String, progress: Progress },
}

/// RFC 3339 timestamp of now, UTC, millisecond precision.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// What a job is about, for log lines: a pull's image or a build's target.
pub fn subject(request: &serde_json::Value) -> &str {
    request["image"]
        .as_str()
        .or_else(|| request["target"].as_str())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_results_keep_the_fields_of_the_json_bodies_they_replace() {
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let layer = ResultLayer {
            digest: digest.clone(),
            size: 3,
            media_type: MediaType::OciLayer(crate::oci::Compression::Gzip),
            source: None,
        };
        let pull = serde_json::to_value(PullResult {
            image: "r/a:1".into(),
            digest: digest.clone(),
            index_digest: None,
            dest: "/srv/x".into(),
            platform: "linux/amd64".into(),
            layers: vec![layer.clone()],
            warnings: Default::default(),
        })
        .unwrap();
        let layers = serde_json::json!([{
            "digest": digest, "size": 3, "media_type": layer.media_type.as_str(),
        }]);
        assert_eq!(
            pull,
            serde_json::json!({
                "image": "r/a:1", "digest": digest, "index_digest": null, "dest": "/srv/x",
                "platform": "linux/amd64", "layers": layers,
            })
        );
        let build = serde_json::to_value(BuildResult {
            target: "r/b:1".into(),
            digest: digest.clone(),
            media_type: MediaType::OciManifest,
            platform: "linux/amd64".into(),
            config_digest: digest.clone(),
            layers: vec![layer],
            diff_id: digest.clone(),
        })
        .unwrap();
        let keys: Vec<_> = build.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "config_digest",
                "diff_id",
                "digest",
                "layers",
                "media_type",
                "platform",
                "target"
            ]
        );
    }

    #[test]
    fn job_error_messages_are_cut_to_a_few_kib() {
        let e = JobError::new("registry_error", "x".repeat(10 * MESSAGE_MAX));
        assert!(e.message.len() < MESSAGE_MAX + 64, "{}", e.message.len());
        assert!(
            e.message
                .ends_with(&format!("…(cut, {} bytes)", 10 * MESSAGE_MAX))
        );
        assert_eq!(JobError::new("x", "short").message, "short");
    }
}
