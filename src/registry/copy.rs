//! The registry side of a registry-to-registry copy: a fetched manifest as an
//! [`ImageToPush`] (its exact bytes, its blobs to be taken from the source repository),
//! an index cut down to some of its entries, and the referrers of a manifest (the OCI
//! referrers API, else the `sha256-<hex>` tag schema and cosign's `.sig`/`.att`/`.sbom`
//! tags).
//!
//! Pushing stays `push_image`'s (HEAD, mount, upload, manifest last); the order of the
//! manifests of a copy (children by digest, then the tag) is the job's (`jobs::copy`).
//! Not for: where blob bytes come from (the job's `OpenBlob`).

use bytes::Bytes;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::auth::Scope;
use super::error_map::{Target, error_for};
use super::transport::read_limited;
use super::{
    BlobSource, Credentials, FetchedManifest, ImageToPush, ManifestKind, PushBlob, Reference,
    RegistryClient, RegistryError,
};
use crate::digest::Digest;
use crate::oci::{Descriptor, MediaType};

/// The largest referrers answer read.
const MAX_REFERRERS_BYTES: usize = 4 << 20;
/// Referrers copied per manifest, at most.
pub const MAX_REFERRERS: usize = 256;

impl ImageToPush {
    /// `manifest` (an image manifest, as fetched from `source`) ready to push byte for
    /// byte: its digest stays the source's. Its blobs carry `source` as where they are,
    /// so within one registry they are mounted. An index is refused: its children are
    /// pushed one by one, then its own bytes.
    pub fn from_fetched(
        manifest: &FetchedManifest,
        source: &Reference,
    ) -> Result<ImageToPush, RegistryError> {
        let ManifestKind::Image { config, layers } = &manifest.kind else {
            return Err(RegistryError::UnsupportedManifest {
                image: source.to_string(),
                reason: format!("{} is an index, not an image manifest", manifest.digest),
            });
        };
        let blob = |d: &Descriptor| PushBlob {
            descriptor: d.clone(),
            source: BlobSource::Repository(source.clone()),
        };
        Ok(ImageToPush {
            layers: layers.iter().map(blob).collect(),
            config: blob(config),
            manifest: manifest.bytes.clone(),
            media_type: manifest.media_type.clone(),
        })
    }
}

/// A new index made of `index`'s document with only the entries whose digests are in
/// `keep` (in the index's order); every other field of the document and of the entries
/// (annotations, platform) is kept as it was.
pub fn subset_index(index: &FetchedManifest, keep: &[Digest]) -> Result<Bytes, RegistryError> {
    let bad = |e: String| RegistryError::UnsupportedManifest {
        image: index.digest.to_string(),
        reason: e,
    };
    let mut doc: Value = serde_json::from_slice(&index.bytes).map_err(|e| bad(e.to_string()))?;
    let entries = doc
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("index without `manifests`".into()))?;
    entries.retain(|e| {
        e["digest"]
            .as_str()
            .and_then(|d| d.parse::<Digest>().ok())
            .is_some_and(|d| keep.contains(&d))
    });
    let bytes = serde_json::to_vec(&doc).map_err(|e| bad(e.to_string()))?;
    Ok(Bytes::from(bytes))
}

#[derive(Deserialize)]
struct ReferrersIndex {
    #[serde(default)]
    manifests: Vec<ReferrerEntry>,
}

#[derive(Deserialize)]
struct ReferrerEntry {
    digest: Digest,
}

/// The tags by which the tag schema and cosign name the referrers of `digest`.
pub fn referrer_tags(digest: &Digest, tags: &[String]) -> Vec<String> {
    let base = digest.to_string().replacen(':', "-", 1);
    tags.iter()
        .filter(|t| {
            *t == &base
                || t.strip_prefix(&base)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|suffix| matches!(suffix, "sig" | "att" | "sbom"))
        })
        .cloned()
        .collect()
}

impl RegistryClient {
    /// The manifests the OCI referrers API lists for `digest` in `reference`'s
    /// repository; `None` when the registry has no such API (404), so the caller falls
    /// back to the tag schema.
    pub async fn referrers_api(
        &self,
        reference: &Reference,
        digest: &Digest,
        creds: Option<&Credentials>,
    ) -> Result<Option<Vec<Digest>>, RegistryError> {
        let path = format!("{}/referrers/{digest}", reference.repository);
        // The origin's answer: mirrors do not serve the referrers API.
        let origin = self.inner.origin(reference).await?;
        let mut req = self.request(
            &origin,
            Method::GET,
            reference,
            &path,
            vec![Scope::pull(&reference.repository)],
            creds,
        )?;
        req.headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(MediaType::OciIndex.as_str()),
        );
        let resp = self.inner.send(&req).await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => return Ok(None),
            _ => return Err(error_for(resp, reference, &req.scopes, Target::Other).await),
        }
        let is_index = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with(MediaType::OciIndex.as_str()));
        if !is_index {
            // Some registries answer their UI or an error page here: no referrers API.
            return Ok(None);
        }
        let body =
            read_limited(resp, MAX_REFERRERS_BYTES, &reference.registry, "referrers").await?;
        let parsed: ReferrersIndex = serde_json::from_slice(&body).map_err(|e| {
            RegistryError::Protocol(format!(
                "referrers of {digest} from {}: {e}",
                reference.registry
            ))
        })?;
        Ok(Some(
            parsed
                .manifests
                .into_iter()
                .take(MAX_REFERRERS)
                .map(|e| e.digest)
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake_registry::{Fake, client, reply};
    use super::*;

    #[tokio::test]
    async fn the_referrers_api_is_read_and_its_absence_is_none() {
        let (a, b) = (digest('a'), digest('b'));
        let listed = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{b}","size":9}}]}}"#,
            MediaType::OciIndex.as_str(),
            MediaType::OciManifest.as_str()
        );
        let wanted = format!("/referrers/{a}");
        let fake = Fake::start(move |seen, _| match seen.path.as_str() {
            p if p.starts_with("/v2/html/") => {
                reply(200, &[("content-type", "text/html")], "<html>")
            }
            p if p.ends_with(&wanted) => reply(
                200,
                &[("content-type", MediaType::OciIndex.as_str())],
                listed.clone(),
            ),
            _ => reply(
                404,
                &[],
                r#"{"errors":[{"code":"NOT_FOUND","message":"no"}]}"#,
            ),
        })
        .await;
        let client = client();
        let found = client
            .referrers_api(&fake.reference("x/y:1"), &a, None)
            .await
            .unwrap();
        assert_eq!(found, Some(vec![b.clone()]));
        let none = client
            .referrers_api(&fake.reference("x/y:1"), &b, None)
            .await
            .unwrap();
        assert_eq!(none, None, "a 404: no referrers API");
        let page = client
            .referrers_api(&fake.reference("html/y:1"), &a, None)
            .await
            .unwrap();
        assert_eq!(page, None, "not an index: no referrers API");
    }

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    #[test]
    fn referrer_tags_are_the_schema_tag_and_cosign_suffixes() {
        let d = digest('a');
        let hex = "a".repeat(64);
        let tags: Vec<String> = [
            format!("sha256-{hex}"),
            format!("sha256-{hex}.sig"),
            format!("sha256-{hex}.att"),
            format!("sha256-{hex}.sbom"),
            format!("sha256-{hex}.other"),
            format!("sha256-{hex}x"),
            "latest".into(),
        ]
        .into();
        assert_eq!(referrer_tags(&d, &tags), tags[..4].to_vec());
    }

    #[test]
    fn a_subset_index_keeps_the_chosen_entries_as_they_were() {
        let (a, b) = (digest('a'), digest('b'));
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": a, "size": 1,
                 "platform": {"os": "linux", "architecture": "amd64"}, "annotations": {"k": "v"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": b, "size": 2,
                 "platform": {"os": "linux", "architecture": "arm64"}},
            ],
            "annotations": {"top": "1"},
        });
        let bytes = Bytes::from(serde_json::to_vec(&doc).unwrap());
        let index = FetchedManifest::parse(
            "x",
            Digest::sha256_of(&bytes),
            Some("application/vnd.oci.image.index.v1+json"),
            bytes,
        )
        .unwrap();
        let cut: Value = serde_json::from_slice(&subset_index(&index, &[a]).unwrap()).unwrap();
        let mut want = doc.clone();
        want["manifests"].as_array_mut().unwrap().truncate(1);
        assert_eq!(cut, want);
    }
}
