//! `POST /copies`, `GET /tags` and the CLI's `copy`, `tag` and `ls`, against real
//! registries: the world's (open, htpasswd or token) and a second `docker-registry` as the
//! other side. Images are pushed with the harness's own upload code (an index of
//! platform manifests by digest, then the index under its tag); skopeo is the judge of
//! what the target serves (`skopeo inspect --raw`, byte for byte), the registry's access
//! log of what traffic a copy made.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::hostile_tar::{gzip, tar};
use crate::common::image::{incompressible_bytes, inspect_raw};
use crate::common::registry::{Registry, RegistryAuth};
use crate::common::upload::{put_manifest, upload_blob};
use crate::common::{Job, Rule, TarEntry, World, expect_problem, tools};
use crate::openapi::spec::{Answer, Spec};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// One platform's manifest of a pushed index.
struct Child {
    arch: &'static str,
    digest: String,
    raw: Vec<u8>,
    /// Its layers' and config's digests.
    blobs: Vec<String>,
}

/// An index as pushed: its bytes and its children.
struct Pushed {
    digest: String,
    raw: Vec<u8>,
    children: Vec<Child>,
}

impl Pushed {
    fn child(&self, arch: &str) -> &Child {
        self.children.iter().find(|c| c.arch == arch).unwrap()
    }

    /// Distinct blobs of every child.
    fn blob_count(&self) -> usize {
        let mut all: Vec<&String> = self.children.iter().flat_map(|c| &c.blobs).collect();
        all.sort();
        all.dedup();
        all.len()
    }
}

/// Pushes an OCI index of one image per architecture to `repo:tag`: each image has a
/// layer shared by all (`shared_bytes` of incompressible data) and one of its own; the
/// children go by digest, the index last, under the tag.
async fn push_index(
    registry: &Registry,
    repo: &str,
    tag: &str,
    archs: &[&'static str],
    shared_bytes: usize,
) -> Pushed {
    let shared = gzip(&tar(&[TarEntry::file(
        "shared",
        incompressible_bytes(shared_bytes, 7),
    )]));
    let shared_digest = upload_blob(registry, repo, &shared).await;
    let mut children = Vec::new();
    for arch in archs {
        let own_tar = tar(&[TarEntry::file("arch", arch.as_bytes())]);
        let own = gzip(&own_tar);
        let own_digest = upload_blob(registry, repo, &own).await;
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [
                tools::digest_of(&tar(&[TarEntry::file("shared", incompressible_bytes(shared_bytes, 7))])),
                tools::digest_of(&own_tar),
            ]},
        }))
        .unwrap();
        let config_digest = upload_blob(registry, repo, &config).await;
        let layer = |digest: &str, size: usize| {
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                   "digest": digest, "size": size})
        };
        let raw = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config.len()},
            "layers": [layer(&shared_digest, shared.len()), layer(&own_digest, own.len())],
        }))
        .unwrap();
        let digest = tools::digest_of(&raw);
        put_manifest(registry, repo, &digest, OCI_MANIFEST, &raw).await;
        children.push(Child {
            arch,
            digest,
            raw,
            blobs: vec![shared_digest.clone(), own_digest, config_digest],
        });
    }
    let raw = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|c| json!({
            "mediaType": OCI_MANIFEST, "digest": c.digest, "size": c.raw.len(),
            "platform": {"os": "linux", "architecture": c.arch},
        })).collect::<Vec<_>>(),
        "annotations": {"org.example.made-by": "hoist tests"},
    }))
    .unwrap();
    put_manifest(registry, repo, tag, OCI_INDEX, &raw).await;
    Pushed {
        digest: tools::digest_of(&raw),
        raw,
        children,
    }
}

/// A second registry, the other side of cross-registry copies.
fn second_registry(world: &World, auth: RegistryAuth) -> Registry {
    Registry::start(&world.dir().join("registry-2"), auth)
}

/// Submits a copy, which must be accepted, and waits for its end.
async fn copy(world: &World, body: Value) -> Job {
    let job = world.submit_job("/copies", "copy", &body).await;
    assert!(
        job.0["request"].get("target_auth").is_none(),
        "target_auth echoed: {job:?}"
    );
    world.wait_job(job.id()).await
}

/// `GET /v2/<repo>/manifests/<reference>` on an open registry: (status, body).
async fn manifest(registry: &Registry, repo: &str, reference: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(registry.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("Accept", format!("{OCI_INDEX}, {OCI_MANIFEST}"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

/// `GET path` answered as `openapi.yaml` says operation `template` answers; the body.
async fn spec_checked(world: &World, path: &str, template: &str) -> Value {
    let resp = world.get(path).send().await.unwrap();
    let answer = Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.bytes().await.unwrap().to_vec(),
    };
    Spec::load().check("GET", template, &answer)
}

fn creds(registry: &Registry) -> Value {
    let (u, p) = registry.credentials().unwrap();
    json!({"username": u, "password": p})
}

#[tokio::test]
async fn an_index_is_copied_whole_byte_for_byte_between_a_token_and_a_basic_registry() {
    let world = World::builder()
        .auth(RegistryAuth::token("alice", "a-secret"))
        .start()
        .await;
    let target = second_registry(&world, RegistryAuth::basic("bob", "b-secret"));
    let pushed = push_index(
        &world.registry,
        "src/app",
        "1",
        &["amd64", "arm64"],
        64 << 10,
    )
    .await;
    let body = json!({
        "source": world.image("src/app:1"),
        "target": format!("{}/dst/app:1", target.host()),
        "auth": creds(&world.registry),
        "target_auth": creds(&target),
    });
    let job = copy(&world, body.clone()).await;
    let result = job.expect_succeeded();
    let shown = spec_checked(&world, &format!("/jobs/{}", job.id()), "/jobs/{id}").await;
    assert_eq!(shown["result"], *result);
    assert_eq!(result["digest"], pushed.digest.as_str(), "{job:?}");
    assert_eq!(result["media_type"], OCI_INDEX);
    assert_eq!(inspect_raw(&target, "dst/app:1"), pushed.raw, "index bytes");
    for child in &pushed.children {
        let raw = inspect_raw(&target, &format!("dst/app@{}", child.digest));
        assert_eq!(raw, child.raw, "child {} bytes", child.arch);
    }
    // The shared layer went up once; the second child found it there.
    let total = (pushed.children.len() * 3) as u64;
    let blobs = &result["blobs"];
    assert_eq!(blobs["copied"], pushed.blob_count() as u64, "{job:?}");
    assert_eq!(blobs["mounted"], 0);
    assert_eq!(blobs["skipped"], total - pushed.blob_count() as u64);
    assert!(result["bytes_copied"].as_u64().unwrap() > 64 << 10);
    for secret in ["a-secret", "b-secret"] {
        assert!(!job.0.to_string().contains(secret), "{job:?}");
        assert!(
            !world.hoist.log_text().contains(secret),
            "credential in the log"
        );
    }

    // Again: the target has everything.
    let again = copy(&world, body).await;
    let blobs = &again.expect_succeeded()["blobs"];
    assert_eq!(
        (&blobs["copied"], &blobs["mounted"], &blobs["skipped"]),
        (&json!(0), &json!(0), &json!(total)),
        "{again:?}"
    );
    assert_eq!(again.result()["bytes_copied"], 0);
}

#[tokio::test]
async fn one_platform_is_its_manifest_unchanged_and_several_a_new_index_of_them() {
    let world = World::start().await;
    let target = second_registry(&world, RegistryAuth::Open);
    let pushed = push_index(
        &world.registry,
        "src/app",
        "1",
        &["amd64", "arm64", "riscv64"],
        4 << 10,
    )
    .await;
    let job = copy(
        &world,
        json!({"source": world.image("src/app:1"), "target": format!("{}/one/app:1", target.host()),
               "platforms": ["linux/arm64"], "cache": "bypass"}),
    )
    .await;
    let arm = pushed.child("arm64");
    assert_eq!(job.expect_succeeded()["digest"], arm.digest.as_str());
    assert_eq!(job.result()["media_type"], OCI_MANIFEST);
    assert_eq!(inspect_raw(&target, "one/app:1"), arm.raw);
    assert!(
        world.cached_blobs().is_empty(),
        "cache: bypass wrote the cache"
    );

    let job = copy(
        &world,
        json!({"source": world.image("src/app:1"), "target": format!("{}/two/app:1", target.host()),
               "platforms": ["linux/riscv64", "linux/amd64"]}),
    )
    .await;
    let raw = inspect_raw(&target, "two/app:1");
    assert_eq!(job.expect_succeeded()["digest"], tools::digest_of(&raw));
    let index: Value = serde_json::from_slice(&raw).unwrap();
    let entries: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    // In the source index's order, each entry as it was.
    let original: Value = serde_json::from_slice(&pushed.raw).unwrap();
    assert_eq!(
        entries,
        [
            pushed.child("amd64").digest.as_str(),
            pushed.child("riscv64").digest.as_str()
        ]
    );
    assert_eq!(index["manifests"][0], original["manifests"][0]);
    assert_eq!(index["annotations"], original["annotations"]);
    assert_eq!(
        inspect_raw(
            &target,
            &format!("two/app@{}", pushed.child("riscv64").digest)
        ),
        pushed.child("riscv64").raw
    );
    assert_eq!(manifest(&target, "two/app", &arm.digest).await.0, 404);

    // A platform the index lacks fails the job, and tags nothing.
    let job = copy(
        &world,
        json!({"source": world.image("src/app:1"), "target": format!("{}/three/app:1", target.host()),
               "platforms": ["linux/s390x"]}),
    )
    .await;
    job.expect_failed("platform_not_found");
    assert_eq!(manifest(&target, "three/app", "1").await.0, 404);
}

#[tokio::test]
async fn within_one_registry_blobs_are_mounted_and_none_uploaded() {
    let world = World::start().await;
    let pushed = push_index(
        &world.registry,
        "src/app",
        "1",
        &["amd64", "arm64"],
        4 << 10,
    )
    .await;
    let job = copy(
        &world,
        json!({"source": world.image("src/app:1"), "target": world.image("mnt/app:1")}),
    )
    .await;
    let result = job.expect_succeeded();
    assert_eq!(result["digest"], pushed.digest.as_str());
    assert_eq!(inspect_raw(&world.registry, "mnt/app:1"), pushed.raw);
    assert_eq!(
        result["blobs"]["mounted"],
        pushed.blob_count() as u64,
        "{job:?}"
    );
    assert_eq!(result["blobs"]["copied"], 0);
    assert_eq!(result["bytes_copied"], 0);
    let mounts: Vec<String> = world
        .registry
        .access_log_lines("POST /v2/mnt/app/blobs/uploads/?")
        .into_iter()
        .filter(|l| l.contains("mount=") && l.contains("\" 201 "))
        .collect();
    assert_eq!(mounts.len(), pushed.blob_count(), "{mounts:#?}");
    let uploads: Vec<String> = world
        .registry
        .access_log_lines("/v2/mnt/app/blobs/uploads/")
        .into_iter()
        .filter(|l| !l.contains("mount="))
        .collect();
    assert!(uploads.is_empty(), "blob uploads: {uploads:#?}");
    assert!(world.cached_blobs().is_empty(), "a mount read blobs");
}

#[tokio::test]
async fn a_retag_is_one_manifest_put_and_no_blob_request() {
    let world = World::start().await;
    let pushed = push_index(
        &world.registry,
        "src/app",
        "1",
        &["amd64", "arm64"],
        4 << 10,
    )
    .await;
    let blob_requests = || world.registry.access_log_lines("/blobs/").len();
    let before = blob_requests();
    let job = copy(
        &world,
        json!({"source": world.image("src/app:1"), "target": world.image("src/app:stable")}),
    )
    .await;
    assert_eq!(job.expect_succeeded()["digest"], pushed.digest.as_str());
    assert_eq!(inspect_raw(&world.registry, "src/app:stable"), pushed.raw);
    assert_eq!(blob_requests(), before, "a retag made blob requests");
    let puts = world
        .registry
        .access_log_lines("PUT /v2/src/app/manifests/")
        .into_iter()
        .filter(|l| !l.contains("/manifests/sha256:") && !l.contains("/manifests/1 "))
        .count();
    assert_eq!(puts, 1, "one manifest PUT, under the new tag");
    assert_eq!(job.result()["manifests"], 1);
    let blobs = &job.result()["blobs"];
    assert_eq!(
        (&blobs["copied"], &blobs["skipped"]),
        (&json!(0), &json!(0))
    );
}

/// The world behind a proxy that sends blobs slowly, an index of 2 × 3 MiB layers, and an
/// open target registry: a copy submitted, seen moving blobs.
async fn slow_copy() -> (World, Registry, Pushed, String) {
    let world = World::builder().proxy().start().await;
    let target = second_registry(&world, RegistryAuth::Open);
    let pushed = push_index(
        &world.registry,
        "src/app",
        "1",
        &["amd64", "arm64"],
        3 << 20,
    )
    .await;
    world
        .proxy()
        .add_rule(Rule::slow_gets("/blobs/", 256 << 10));
    let job = world
        .submit_job(
            "/copies",
            "copy",
            &json!({"source": world.image("src/app:1"),
                    "target": format!("{}/dst/app:1", target.host())}),
        )
        .await;
    let id = job.id().to_string();
    world
        .wait_until(&id, Duration::from_secs(30), |j| {
            j.0["progress"]["layers"]
                .as_array()
                .is_some_and(|ls| ls.iter().any(|l| l["state"] == "downloading"))
        })
        .await;
    (world, target, pushed, id)
}

/// The target's tag is absent, or names the whole index with every child in place.
async fn absent_or_complete(target: &Registry, pushed: &Pushed) {
    let (status, raw) = manifest(target, "dst/app", "1").await;
    if status == 404 {
        return;
    }
    assert_eq!(status, 200);
    assert_eq!(raw, pushed.raw, "the tag names something else");
    for child in &pushed.children {
        assert_eq!(manifest(target, "dst/app", &child.digest).await.0, 200);
    }
}

#[tokio::test]
async fn a_cancelled_copy_leaves_the_target_tag_absent() {
    let (world, target, pushed, id) = slow_copy().await;
    let job = world.cancel_job(&id).await;
    assert_eq!(job.status(), "cancelled", "{job:?}");
    absent_or_complete(&target, &pushed).await;
    assert_eq!(
        manifest(&target, "dst/app", "1").await.0,
        404,
        "cancelled mid-blob"
    );
}

#[tokio::test]
async fn a_copy_killed_mid_blob_leaves_no_tag_and_runs_again_after_restart() {
    let (mut world, target, pushed, id) = slow_copy().await;
    world.hoist.kill();
    assert_eq!(manifest(&target, "dst/app", "1").await.0, 404);
    world.proxy().clear_rules();
    world.restart_hoist();
    let job = world.wait_job(&id).await;
    // No credentials were given: the job is re-queued and runs to its end.
    assert_eq!(job.expect_succeeded()["digest"], pushed.digest.as_str());
    absent_or_complete(&target, &pushed).await;
    assert_eq!(inspect_raw(&target, "dst/app:1"), pushed.raw);
    world.assert_cache_verified();
}

#[tokio::test]
async fn tags_are_listed_whole_in_order_and_page_by_page() {
    let world = World::start().await;
    let pushed = push_index(&world.registry, "many/app", "base", &["amd64"], 1 << 10).await;
    let child = pushed.child("amd64");
    // distribution 2.8 ignores `n` and answers every tag, unsorted, in one page: the
    // daemon sorts them (its `Link` paging is tested against a scripted registry, in
    // `registry::tags`).
    let mut want: Vec<String> = (0..40).rev().map(|i| format!("t{i:04}")).collect();
    for chunk in want.chunks(32) {
        futures_util::future::join_all(
            chunk
                .iter()
                .map(|t| put_manifest(&world.registry, "many/app", t, OCI_MANIFEST, &child.raw)),
        )
        .await;
    }
    want.push("base".into());
    want.sort();
    let path = format!("/tags?repository={}", world.image("many/app"));
    let body = spec_checked(&world, &path, "/tags").await;
    assert_eq!(body["repository"], world.image("many/app"));
    let got: Vec<String> = serde_json::from_value(body["tags"].clone()).unwrap();
    assert_eq!(got, want);
    assert!(body.get("next").is_none(), "{}", body["next"]);
    let pages = world
        .registry
        .access_log_lines("GET /v2/many/app/tags/list");
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert!(pages[0].contains("?n=1000 "), "{pages:#?}");

    // One tag a page, through `next`.
    let few = ["a", "b", "c", "d", "e"];
    let fewer = push_index(&world.registry, "few/app", "a", &["amd64"], 1 << 10).await;
    for t in &few[1..] {
        put_manifest(&world.registry, "few/app", t, OCI_INDEX, &fewer.raw).await;
    }
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    for _ in 0..10 {
        let mut path = format!("/tags?repository={}&n=1", world.image("few/app:ignored"));
        if let Some(l) = &last {
            path.push_str(&format!("&last={l}"));
        }
        let (status, body) = world.get_json(&path).await;
        assert_eq!(status, 200, "{body}");
        let tags = body["tags"].as_array().unwrap();
        assert!(tags.len() <= 1, "{body}");
        seen.extend(tags.iter().map(|t| t.as_str().unwrap().to_string()));
        match body["next"].as_str() {
            Some(n) => last = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, few);

    let resp = world
        .get(&format!("/tags?repository={}", world.image("none/app")))
        .send()
        .await
        .unwrap();
    expect_problem(resp, 404, Some("name_unknown")).await;
}

#[tokio::test]
async fn referrers_and_cosign_tags_follow_the_image_when_asked() {
    let world = World::start().await;
    let target = second_registry(&world, RegistryAuth::Open);
    let pushed = push_index(&world.registry, "src/app", "1", &["amd64"], 1 << 10).await;
    // A cosign-style signature: a manifest tagged `sha256-<hex>.sig` beside the index.
    let payload = br#"{"critical":{"image":{"docker-manifest-digest":"x"}}}"#;
    let layer = upload_blob(&world.registry, "src/app", payload).await;
    let config = upload_blob(&world.registry, "src/app", b"{}").await;
    let sig = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": layer, "size": payload.len()}],
    }))
    .unwrap();
    let sig_tag = format!("{}.sig", pushed.digest.replacen(':', "-", 1));
    put_manifest(&world.registry, "src/app", &sig_tag, OCI_MANIFEST, &sig).await;

    let without = copy(
        &world,
        json!({"source": world.image("src/app:1"), "target": format!("{}/plain/app:1", target.host())}),
    )
    .await;
    without.expect_succeeded();
    assert_eq!(manifest(&target, "plain/app", &sig_tag).await.0, 404);

    let with = copy(
        &world,
        json!({"source": world.image("src/app:1"), "target": format!("{}/signed/app:1", target.host()),
               "referrers": true}),
    )
    .await;
    with.expect_succeeded();
    assert_eq!(inspect_raw(&target, &format!("signed/app:{sig_tag}")), sig);
    assert_eq!(inspect_raw(&target, "signed/app:1"), pushed.raw);
}

#[tokio::test]
async fn bad_copies_are_refused_with_their_codes() {
    let world = World::start().await;
    let src = world.image("src/app:1");
    for (body, code) in [
        (
            json!({"source": src, "target": src}),
            "same_source_and_target",
        ),
        (
            json!({"source": src, "target": world.image("x/y:1"), "platforms": ["linux"]}),
            "invalid_platform",
        ),
        (
            json!({"source": src, "target": world.image("x/y:1"), "platforms": []}),
            "invalid_request",
        ),
        (
            json!({"source": src, "target": world.image("x/y:1"), "platforms": "most"}),
            "invalid_request",
        ),
        (
            json!({"source": src, "target": format!("{}@sha256:{}", world.image("x/y"), "a".repeat(64))}),
            "invalid_reference",
        ),
        (
            json!({"source": "not a ref", "target": src}),
            "invalid_reference",
        ),
        (json!({"source": src}), "invalid_request"),
        (
            json!({"source": src, "target": world.image("x/y:1"), "mode": "fast"}),
            "invalid_request",
        ),
    ] {
        let resp = world.post("/copies").json(&body).send().await.unwrap();
        let problem = expect_problem(resp, 400, Some(code)).await;
        assert!(problem["detail"].as_str().is_some(), "{body}: {problem}");
    }
    let (_, jobs) = world.get_json("/jobs?kind=copy").await;
    assert_eq!(jobs, json!([]), "a refused copy became a job");
}

/// `hoist` with nothing of the host's settings, speaking to `world`'s daemon.
fn hoist(world: &World, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
    for var in ["HOIST_URL", "HOIST_API_TOKEN", "CI", "HOIST_LISTEN"] {
        cmd.env_remove(var);
    }
    cmd.arg("--daemon").arg(world.hoist.base_url()).args(args);
    let out = cmd.output().expect("run hoist");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_copies_retags_and_lists_tags() {
    let world = World::start().await;
    let target = second_registry(&world, RegistryAuth::basic("carol", "c-secret"));
    let pushed = push_index(
        &world.registry,
        "src/app",
        "1",
        &["amd64", "arm64"],
        4 << 10,
    )
    .await;
    let (src, dst) = (
        world.image("src/app:1"),
        format!("{}/dst/app:1", target.host()),
    );
    let w = &world;
    let (ok, out, err) = hoist(
        w,
        &[
            "copy",
            &src,
            &dst,
            "--all",
            "--target-creds",
            "carol:c-secret",
        ],
    );
    assert!(ok, "hoist copy: {err}");
    // Text by default: one line naming what was copied and its digest.
    assert!(
        out.trim().starts_with("copied ") && out.contains(pushed.digest.as_str()),
        "{out}"
    );
    assert_eq!(inspect_raw(&target, "dst/app:1"), pushed.raw);

    let (ok, out, err) = hoist(
        w,
        &[
            "copy",
            &src,
            &format!("{}/dst/app:arm", target.host()),
            "--platform",
            "linux/arm64",
            "--target-creds",
            "carol:c-secret",
            "-o",
            "json",
        ],
    );
    assert!(ok, "hoist copy --platform: {err}");
    // `-o json`: the whole job, its result inside.
    let job: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(job["status"], "succeeded");
    assert_eq!(
        job["result"]["digest"],
        pushed.child("arm64").digest.as_str()
    );

    let (ok, _, err) = hoist(w, &["tag", &src, "stable"]);
    assert!(ok, "hoist tag: {err}");
    assert_eq!(inspect_raw(&world.registry, "src/app:stable"), pushed.raw);

    let (ok, out, err) = hoist(w, &["ls", &world.image("src/app")]);
    assert!(ok, "hoist ls: {err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["1", "stable"]);

    let (ok, _, err) = hoist(w, &["tag", &src, "other/repo:2"]);
    assert!(!ok && err.contains("not a tag"), "{err}");
    let (ok, _, err) = hoist(w, &["copy", &src, &src]);
    assert!(!ok && err.contains("source and target are both"), "{err}");
}

#[tokio::test]
async fn a_source_blob_that_does_not_match_its_digest_is_never_copied() {
    let world = World::start().await;
    let target = second_registry(&world, RegistryAuth::Open);
    let pushed = push_index(&world.registry, "src/app", "1", &["amd64"], 256 << 10).await;
    let shared = pushed.children[0].blobs[0].clone();
    world.registry.corrupt_blob(&shared);
    for (cache, repo) in [("bypass", "streamed"), ("use", "cached")] {
        let job = copy(
            &world,
            json!({"source": world.image("src/app:1"),
                   "target": format!("{}/{repo}/app:1", target.host()), "cache": cache}),
        )
        .await;
        job.expect_failed("digest_mismatch");
        assert_eq!(
            manifest(&target, &format!("{repo}/app"), "1").await.0,
            404,
            "{cache}: tagged"
        );
        let head = reqwest::Client::new()
            .head(target.url(&format!("/v2/{repo}/app/blobs/{shared}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.status(),
            404,
            "{cache}: the bad blob reached the target"
        );
    }
    assert!(
        !world.cached_blobs().contains(&shared),
        "the bad blob was cached"
    );
    world.assert_cache_verified();
}
