//! Hand-crafted layers pushed through the registry's own upload protocol
//! (`POST /v2/<repo>/blobs/uploads/`, `PUT <location>&digest=…`, `PUT` of the manifest).
//!
//! For layers no tool would make (written by [`super::hostile_tar`]). Not for: well-formed
//! images (see `image`, which uses umoci and skopeo).

use serde_json::{Value, json};

use super::hostile_tar::gzip;
use super::image::Pushed;
use super::registry::{Registry, RegistryAuth};
use super::tools;

/// The platform of this machine in OCI terms (`amd64`, `arm64`, …).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
}

/// An `Authorization` value good for push and pull on `repo`.
async fn authorization(registry: &Registry, repo: &str) -> Option<String> {
    use base64::Engine as _;
    match &registry.auth {
        RegistryAuth::Open => None,
        RegistryAuth::Basic { user, password } => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )),
        RegistryAuth::Token { user, password } => {
            let ts = registry.token_server.as_ref().expect("token server");
            let resp: Value = client()
                .get(ts.realm())
                .query(&[
                    ("service", ts.service.as_str()),
                    ("scope", &format!("repository:{repo}:pull,push")),
                ])
                .basic_auth(user, Some(password))
                .send()
                .await
                .expect("token request")
                .error_for_status()
                .expect("token granted")
                .json()
                .await
                .expect("token JSON");
            Some(format!("Bearer {}", resp["token"].as_str().expect("token")))
        }
    }
}

/// Uploads one blob (monolithic: POST, then PUT with the digest); returns its digest.
pub async fn upload_blob(registry: &Registry, repo: &str, bytes: &[u8]) -> String {
    let digest = tools::digest_of(bytes);
    let auth = authorization(registry, repo).await;
    let http = client();
    let mut post = http.post(registry.url(&format!("/v2/{repo}/blobs/uploads/")));
    if let Some(a) = &auth {
        post = post.header("Authorization", a);
    }
    let resp = post.send().await.expect("start upload");
    assert_eq!(resp.status().as_u16(), 202, "POST blobs/uploads: {resp:?}");
    let location = resp
        .headers()
        .get("Location")
        .expect("upload Location")
        .to_str()
        .unwrap()
        .to_owned();
    let location = if location.starts_with('/') {
        registry.url(&location)
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let mut put = http
        .put(format!("{location}{sep}digest={digest}"))
        .header("Content-Type", "application/octet-stream")
        .body(bytes.to_vec());
    if let Some(a) = &auth {
        put = put.header("Authorization", a);
    }
    let resp = put.send().await.expect("finish upload");
    let status = resp.status().as_u16();
    assert_eq!(
        status,
        201,
        "PUT blob {digest}: {}",
        resp.text().await.unwrap_or_default()
    );
    digest
}

/// PUTs a manifest (or index) under `reference` (a tag or digest).
pub async fn put_manifest(
    registry: &Registry,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) {
    let auth = authorization(registry, repo).await;
    let mut put = client()
        .put(registry.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("Content-Type", media_type)
        .body(bytes.to_vec());
    if let Some(a) = &auth {
        put = put.header("Authorization", a);
    }
    let resp = put.send().await.expect("put manifest");
    let status = resp.status().as_u16();
    assert_eq!(
        status,
        201,
        "PUT manifest {repo}:{reference}: {}",
        resp.text().await.unwrap_or_default()
    );
}

/// GETs a blob straight from the registry: (status, body).
pub async fn fetch_blob(registry: &Registry, repo: &str, digest: &str) -> (u16, Vec<u8>) {
    let auth = authorization(registry, repo).await;
    let mut get = client().get(registry.url(&format!("/v2/{repo}/blobs/{digest}")));
    if let Some(a) = &auth {
        get = get.header("Authorization", a);
    }
    let resp = get.send().await.expect("get blob");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("blob body").to_vec())
}

/// Pushes an OCI image whose layers are these uncompressed tarballs (gzipped here), for
/// this machine's platform. `repo_tag` is `repo:tag`.
pub async fn push_layers(registry: &Registry, repo_tag: &str, layers: &[Vec<u8>]) -> Pushed {
    let (repo, tag) = repo_tag.rsplit_once(':').expect("repo:tag");
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        let blob = gzip(tar);
        let digest = upload_blob(registry, repo, &blob).await;
        diff_ids.push(tools::digest_of(tar));
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": blob.len(),
        }));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| json!({"created_by": "hoist test"})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let config_digest = upload_blob(registry, repo, &config).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": descriptors,
    });
    let raw = serde_json::to_vec(&manifest).unwrap();
    put_manifest(
        registry,
        repo,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        &raw,
    )
    .await;
    Pushed {
        repo_tag: repo_tag.into(),
        digest: tools::digest_of(&raw),
        manifest,
        raw,
    }
}
