//! Builds that must not happen: requests refused before they become jobs, bases that cannot be had, and cancelled builds; none pushes a manifest.

use super::*;

#[tokio::test]
async fn docker_format_with_zstd_layers_is_refused_when_submitted() {
    // Docker schema 2 has no zstd layer type: skopeo and podman refuse such images, so
    // hoist does not make them.
    let world = World::start().await;
    make_source(&world.root().join("dz"), "dz");
    let body = json!({"source": "dz", "target": world.image("dz/app:1"),
                      "format": "docker", "compression": "zstd"});
    let resp = world.post("/builds").json(&body).send().await.unwrap();
    let problem = expect_problem(resp, 400, Some("invalid_request")).await;
    assert!(
        problem["detail"].as_str().unwrap_or("").contains("zstd"),
        "{problem}"
    );
}

// ---------------------------------------------------------------------------------------
// Requests refused before they become jobs
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn build_requests_that_cannot_be_built_are_refused_and_make_no_job() {
    let world = World::start().await;
    make_source(&world.root().join("src"), "refused");
    fs::write(world.root().join("a-file"), "not a folder").unwrap();
    fs::create_dir_all(world.outside().join("src")).unwrap();
    let target = world.image("refused/app:1");
    let with = |extra: Value| {
        let mut body = json!({"source": "src", "target": target});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let outside = world.outside().join("src").display().to_string();
    let root = world.root().display().to_string();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            with(json!({"source": outside})),
            403,
            "source_outside_roots",
        ),
        (with(json!({"source": root})), 403, "source_outside_roots"),
        (
            with(json!({"source": "does/not/exist"})),
            400,
            "invalid_source",
        ),
        (with(json!({"source": "a-file"})), 400, "invalid_source"),
        (with(json!({"source": "src/../src"})), 400, "invalid_source"),
        (with(json!({"source": ""})), 400, "invalid_source"),
        (
            with(
                json!({"target": format!("{}@sha256:{}", world.image("refused/app"), "a".repeat(64))}),
            ),
            400,
            "invalid_reference",
        ),
        (
            with(
                json!({"target": format!("{}@sha256:{}", world.image("refused/app:1"), "b".repeat(64))}),
            ),
            400,
            "invalid_reference",
        ),
        (
            with(json!({"target": "Not A/Reference"})),
            400,
            "invalid_reference",
        ),
        (
            with(json!({"base": "UPPER/case:1"})),
            400,
            "invalid_reference",
        ),
        (
            with(json!({"config": {"env": ["NO_EQUALS_SIGN"]}})),
            400,
            "invalid_config",
        ),
        (
            with(json!({"config": {"env": ["=value"]}})),
            400,
            "invalid_config",
        ),
        (
            with(json!({"config": {"exposed_ports": ["http"]}})),
            400,
            "invalid_config",
        ),
        (
            with(json!({"config": {"exposed_ports": ["8080/quic"]}})),
            400,
            "invalid_config",
        ),
        (
            with(json!({"config": {"labels": {"": "x"}}})),
            400,
            "invalid_config",
        ),
        (
            with(json!({"platform": "not-a-platform"})),
            400,
            "invalid_platform",
        ),
    ];
    for (body, status, code) in cases {
        refused(&world, body, status, code).await;
    }
    // malformed JSON shapes: 400 whatever the code
    for body in [
        with(json!({"source_date_epoch": -1})),
        with(json!({"format": "tarball"})),
        with(json!({"compression": "lz4"})),
        with(json!({"config": {"entrypoint": "/bin/app"}})),
        with(json!({"config": {"volumes": ["/data"]}})),
        with(json!({"unknown_field": true})),
        json!({"target": target}),
        json!({"source": "src"}),
    ] {
        let resp = world.post("/builds").json(&body).send().await.unwrap();
        expect_problem(resp, 400, None).await;
    }
    let (_, builds) = world.get_json("/jobs?kind=build").await;
    assert!(
        jobs_of(&builds).is_empty(),
        "refused builds made jobs: {builds}"
    );
    // and the same source, absolute in the second root, is fine
    make_source(&world.root2().join("elsewhere"), "second-root");
    let job = build_ok(
        &world,
        json!({"source": world.root2().join("elsewhere").display().to_string(),
               "target": target}),
    )
    .await;
    assert_eq!(
        job.0["request"]["source"],
        world.root2().join("elsewhere").display().to_string()
    );
}

// ---------------------------------------------------------------------------------------
// Cancelling, and big layers
// ---------------------------------------------------------------------------------------

/// Nothing left in the daemon's `tmp/` (where builds write their layer).
fn assert_no_work_files(world: &World) {
    let tmp = world.hoist.data_dir.join("tmp");
    let left: Vec<_> = fs::read_dir(&tmp)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "build work files left: {left:?}");
}

/// True when the registry has a manifest under `repo:tag` (HEAD on the registry itself).
async fn tag_exists(registry: &Registry, repo: &str, tag: &str) -> bool {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .head(registry.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("Accept", format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"))
        .send()
        .await
        .unwrap();
    match resp.status().as_u16() {
        200 => true,
        404 => false,
        other => panic!("HEAD manifest {repo}:{tag}: {other}"),
    }
}

/// Submits a build whose first existence check is held back 3 s (429, `Retry-After`),
/// cancels it while it is pushing, and returns the ended job.
async fn cancel_while_pushing(world: &World, body: Value) -> Job {
    world.proxy().add_rule(
        Rule::new(
            Fault::TooManyRequests {
                retry_after_secs: 3,
            },
            "/blobs/",
        )
        .method("HEAD")
        .times(1),
    );
    let job = submit_build(world, &body).await;
    world
        .wait_until(job.id(), Duration::from_secs(30), |j| {
            j.status() == "running" && j.0["progress"]["phase"] == "pushing"
        })
        .await;
    world.cancel_job(job.id()).await
}

#[tokio::test]
async fn cancelled_build_pushes_no_manifest() {
    let world = World::builder().proxy().start().await;
    make_source(&world.root().join("src"), "cancel");
    let body = |tag: &str| {
        json!({"source": "src", "target": world.image(&format!("cancel/app:{tag}")),
               "source_date_epoch": SDE})
    };
    // blobs still to upload: the cancel is seen before the first upload
    let job = cancel_while_pushing(&world, body("1")).await;
    assert_eq!(job.status(), "cancelled", "{job:?}");
    assert_eq!(job.error_code(), Some("cancelled"));
    assert!(job.result().is_null(), "{job:?}");
    assert!(!tag_exists(&world.registry, "cancel/app", "1").await);
    assert_no_work_files(&world);

    // every blob already there (the same build pushed before): cancelling must still
    // keep the manifest from being PUT
    build_ok(&world, body("2")).await;
    let job = cancel_while_pushing(&world, body("3")).await;
    assert_eq!(
        job.status(),
        "cancelled",
        "a build cancelled while pushing went on: {job:?}"
    );
    assert!(
        !tag_exists(&world.registry, "cancel/app", "3").await,
        "a cancelled build moved the tag"
    );
}

#[tokio::test]
async fn build_whose_base_cannot_be_had_fails_and_pushes_nothing() {
    let world = World::start().await;
    world.push(&BASE, "base/img:1", Format::Oci);
    make_source(&world.root().join("src"), "no-base");
    let cases = [
        (
            json!({"base": world.image("base/missing:1")}),
            "manifest_unknown",
        ),
        (
            json!({"base": world.image("base/img:404")}),
            "manifest_unknown",
        ),
        (
            json!({"base": world.image("base/img:1"), "platform": "linux/s390x"}),
            "platform_not_found",
        ),
    ];
    for (i, (extra, code)) in cases.into_iter().enumerate() {
        let mut body = json!({"source": "src", "target": world.image(&format!("nobase/app:{i}"))});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let job = build(&world, body).await;
        job.expect_failed(code);
        assert!(
            !tag_exists(&world.registry, "nobase/app", &i.to_string()).await,
            "a failed build pushed a manifest"
        );
    }
    assert_no_work_files(&world);
}

#[tokio::test]
async fn source_date_epoch_no_image_can_hold_is_refused_when_submitted() {
    let world = World::start().await;
    make_source(&world.root().join("src"), "epoch");
    // year 10000: `created` has no RFC 3339 form. A bad request is a 400, never a job
    // that builds the layer and then fails.
    let body = json!({"source": "src", "target": world.image("epoch/app:1"),
                      "source_date_epoch": 253_402_300_800u64});
    let resp = world.post("/builds").json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if status == 202 {
        let job: Value = serde_json::from_str(&text).unwrap();
        let job = world.wait_job(job["id"].as_str().unwrap()).await;
        panic!("accepted, and then the job ended so: {job:?}");
    }
    assert_eq!(status, 400, "{text}");
}
