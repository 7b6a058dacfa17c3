//! Pushing: what the registry has is not sent again, progress counts the bytes pushed, token auth, and layers past 64 MiB go up in chunks, a cut chunk resumed where the registry says.

use super::*;

// ---------------------------------------------------------------------------------------
// Pushing: what is there is not sent again; progress; auth
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn second_push_of_the_same_build_uploads_no_blob() {
    let world = World::builder().proxy().start().await;
    world.push(&BASE, "base/img:1", Format::Oci);
    make_source(&world.root().join("src"), "twice");
    for (with_base, repo) in [(false, "alone/app"), (true, "stacked/app")] {
        let mut body = json!({"source": "src", "source_date_epoch": SDE});
        if with_base {
            body["base"] = json!(world.image("base/img:1"));
        }
        body["target"] = json!(world.image(&format!("{repo}:1")));
        let first = build_ok(&world, body.clone()).await;
        let states: Vec<&str> = first.0["progress"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["state"].as_str().unwrap())
            .collect();
        assert!(
            states.contains(&"pushed"),
            "the first push uploads: {first:?}"
        );

        assert!(
            !uploads(&world).is_empty(),
            "the first push's uploads are seen in the proxy log: {}",
            world.proxy().log_text()
        );
        world.proxy().clear_log();
        body["target"] = json!(world.image(&format!("{repo}:2")));
        let second = build_ok(&world, body).await;
        assert_eq!(second.result()["digest"], first.result()["digest"]);
        assert_eq!(
            uploads(&world),
            Vec::<String>::new(),
            "the second push (base: {with_base}) uploaded:\n{}",
            world.proxy().log_text()
        );
        assert!(
            logged(&world, "POST", "/blobs/uploads/").is_empty(),
            "no upload started, no mount asked: {}",
            world.proxy().log_text()
        );
        let heads = logged(&world, "HEAD", &format!("/v2/{repo}/blobs/"));
        let blobs = second.result()["layers"].as_array().unwrap().len() + 1;
        assert!(
            heads.len() >= blobs && heads.iter().all(|h| h.status == 200),
            "every blob (layers and config) checked with HEAD and found: {}",
            world.proxy().log_text()
        );
        assert_eq!(
            logged(&world, "PUT", &format!("/v2/{repo}/manifests/2")).len(),
            1,
            "{}",
            world.proxy().log_text()
        );
        for layer in second.0["progress"]["layers"].as_array().unwrap() {
            assert_eq!(layer["state"], "exists", "{second:?}");
        }
        assert_eq!(
            served(&world.registry, &format!("{repo}:2")).await.digest,
            first.result()["digest"].as_str().unwrap()
        );
    }
}

#[tokio::test]
async fn progress_of_a_build_reports_the_bytes_pushed() {
    let world = World::builder().proxy().start().await;
    let source = world.root().join("big");
    fs::create_dir_all(&source).unwrap();
    fs::write(
        source.join("blob.bin"),
        image::incompressible_bytes(3 << 20, 7),
    )
    .unwrap();
    // hold the first existence check back for 2 s, so the events are followed live
    world.proxy().add_rule(
        Rule::new(
            Fault::TooManyRequests {
                retry_after_secs: 2,
            },
            "/blobs/",
        )
        .method("HEAD")
        .times(1),
    );
    let job = submit_build(
        &world,
        &json!({"source": "big", "target": world.image("big/app:1")}),
    )
    .await;
    let text = tokio::time::timeout(Duration::from_secs(120), async {
        world
            .get(&format!("/jobs/{}/events", job.id()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
    .await
    .expect("the event stream ends with the job");
    let job = world.wait_job(job.id()).await;
    job.expect_succeeded();
    let progress = &job.0["progress"];
    let layer_size = job.result()["layers"][0]["size"].as_u64().unwrap();
    assert!(layer_size > 3 << 20, "{job:?}");
    let served = served(&world.registry, "big/app:1").await;
    let config_size = served.manifest["config"]["size"].as_u64().unwrap();
    assert_eq!(progress["bytes_total"], layer_size + config_size, "{job:?}");
    assert_eq!(progress["bytes_done"], progress["bytes_total"], "{job:?}");
    assert_eq!(progress["layers_total"], 2, "the layer and the config");
    assert_eq!(progress["layers_done"], 2, "{job:?}");

    let events: Vec<Value> = common::sse::parse_json(&text)
        .into_iter()
        .filter(|(name, _)| name == "progress")
        .map(|(_, data)| data)
        .collect();
    // `done` is the last phase of a job that succeeded: its bytes are the pushing ones.
    let pushing: Vec<&Value> = events
        .iter()
        .filter(|e| e["phase"] == "pushing" || e["phase"] == "done")
        .collect();
    assert!(
        !pushing.is_empty(),
        "progress events in phase pushing: {text}"
    );
    let done: Vec<u64> = pushing
        .iter()
        .map(|e| e["bytes_done"].as_u64().unwrap())
        .collect();
    assert!(
        done.windows(2).all(|w| w[0] <= w[1]),
        "bytes_done only grows: {done:?}"
    );
    assert_eq!(
        pushing.last().unwrap()["bytes_done"],
        layer_size + config_size
    );
}

#[tokio::test]
async fn token_auth_registry_builds_with_credentials_and_refuses_without() {
    let world = World::builder()
        .auth(RegistryAuth::token("alice", PASSWORD))
        .start()
        .await;
    world.push(&BASE, "base/img:1", Format::Oci);
    make_source(&world.root().join("src"), "token");
    let alice = json!({"username": "alice", "password": PASSWORD});
    let tokens = world.registry.token_server.as_ref().unwrap();

    for (i, (format, compression, with_base)) in [
        ("oci", "zstd", true),
        ("docker", "gzip", true),
        ("oci", "gzip", false),
    ]
    .into_iter()
    .enumerate()
    {
        let repo_tag = format!("private/app:{i}");
        let mut body = json!({"source": "src", "target": world.image(&repo_tag),
                              "format": format, "compression": compression, "auth": alice});
        if with_base {
            body["base"] = json!(world.image("base/img:1"));
        }
        let before = tokens.requests().len();
        let mounts = || {
            world
                .registry
                .access_log_lines("POST /v2/private/app/blobs/uploads/?")
                .into_iter()
                .filter(|l| l.contains("mount=") && l.contains("\" 201 "))
                .count()
        };
        let mounts_before = mounts();
        let job = build_ok(&world, body).await;
        let served = served(&world.registry, &repo_tag).await;
        assert_eq!(job.result()["digest"], served.digest.as_str());
        let (manifest_type, _, layer_type) = media_types(format, compression);
        assert_eq!(served.manifest["mediaType"], manifest_type);
        assert_eq!(
            served.layers().last().unwrap()["mediaType"],
            layer_type.as_str()
        );
        assert_skopeo_reads(&world.registry, &repo_tag, &served);
        if with_base && i == 0 {
            assert_eq!(
                mounts() - mounts_before,
                2,
                "the base's two layers are mounted under token auth: {:?}",
                world.registry.access_log_lines("/blobs/uploads/")
            );
        }
        let asked = &tokens.requests()[before..];
        assert!(
            asked.iter().any(|r| r.granted
                && r.scopes
                    .iter()
                    .any(|s| s == "repository:private/app:pull,push"
                        || s == "repository:private/app:push,pull")),
            "a push,pull token for the target: {asked:?}"
        );
        let mut expected = expected_from_source(&world.root().join("src"), Recorded::default());
        if with_base {
            expected = overlay(scan(&BASE_TREE.rootfs, &[]), expected);
        }
        if compression == "gzip" {
            let (_keep, unpacked) = skopeo_umoci_unpack(&world.registry, &repo_tag);
            assert_tree(&expected, &unpacked.rootfs, &[], "umoci's unpack");
        }
        let pulled = world
            .pull(
                json!({"image": world.image(&repo_tag), "dest": format!("pulled-{i}"),
                         "auth": alice}),
            )
            .await;
        pulled.expect_succeeded();
        assert_tree(&expected, &pulled.dest(), &[], "hoist's pull");
    }

    // without credentials, or with wrong ones: unauthorized, and nothing pushed
    let job = build(
        &world,
        json!({"source": "src", "target": world.image("private/app:anonymous")}),
    )
    .await;
    job.expect_failed("unauthorized");
    let job = build(
        &world,
        json!({"source": "src", "target": world.image("private/app:wrong"),
               "auth": {"username": "alice", "password": "wrong"}}),
    )
    .await;
    job.expect_failed("unauthorized");
    let tags = tools::run_stdout(
        tools::command("skopeo")
            .args(["list-tags", "--tls-verify=false"])
            .arg(format!("--creds=alice:{PASSWORD}"))
            .arg(format!("docker://{}/private/app", world.registry.host())),
    );
    let mut tags: Vec<String> =
        serde_json::from_value(serde_json::from_str::<Value>(&tags).unwrap()["Tags"].clone())
            .unwrap();
    tags.sort();
    assert_eq!(tags, ["0", "1", "2"], "no tag pushed without credentials");
    assert!(
        !world.hoist.log_text().contains(PASSWORD),
        "the password reached the log"
    );
}

#[tokio::test]
async fn layer_over_64_mib_is_uploaded_in_chunks_and_pulls_back_whole() {
    let world = World::builder().proxy().start().await;
    let source = huge_source(&world);
    let job = build_ok(&world, huge_build(&world)).await;
    let patches = logged(&world, "PATCH", "/v2/huge/app/blobs/uploads/");
    assert!(
        patches.len() >= 2 && patches.iter().all(|p| p.status == 202),
        "a big blob goes up in PATCH chunks: {}",
        world.proxy().log_text()
    );
    assert_pushed_whole(&world, &job, &source).await;
}

#[tokio::test]
async fn a_cut_chunk_is_resumed_where_the_upload_status_says_and_the_image_pulls_back_whole() {
    let world = World::builder().proxy().start().await;
    let source = huge_source(&world);
    // The second chunk is cut before the registry has any of it (distribution 2.8 cannot
    // resume a chunk it has part of: see the next test); its resend is answered 429.
    world.proxy().add_rule(
        Rule::new(Fault::DropRequestAfter(0), UPLOADS)
            .method("PATCH")
            .after(1)
            .times(1),
    );
    world.proxy().add_rule(
        Rule::new(
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
            UPLOADS,
        )
        .method("PATCH")
        .after(2)
        .times(1),
    );
    let job = build_ok(&world, huge_build(&world)).await;
    let log: Vec<_> = world
        .proxy()
        .log()
        .into_iter()
        .filter(|l| l.path.contains(UPLOADS) && matches!(l.method.as_str(), "PATCH" | "GET"))
        .collect();
    let text = world.proxy().log_text();
    let chunk = 16u64 << 20;
    let second = format!("{chunk}-{}", 2 * chunk - 1);
    let shape: Vec<(&str, Option<&str>, u16)> = log
        .iter()
        .take(6)
        .map(|l| (l.method.as_str(), l.content_range.as_deref(), l.status))
        .collect();
    assert_eq!(
        shape,
        [
            ("PATCH", Some(format!("0-{}", chunk - 1).as_str()), 202),
            ("PATCH", Some(second.as_str()), 0),
            ("GET", None, 204),
            ("PATCH", Some(second.as_str()), 429),
            ("GET", None, 204),
            ("PATCH", Some(second.as_str()), 202),
        ],
        "{text}"
    );
    assert_eq!(
        log[2].path, log[1].path,
        "the status of the cut upload: {text}"
    );
    for (status, resend) in [(&log[2], &log[3]), (&log[4], &log[5])] {
        let has = status.answered_range.as_deref().unwrap_or_default();
        let last: u64 = has.strip_prefix("0-").unwrap().parse().unwrap();
        let from: u64 = resend
            .content_range
            .as_deref()
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            from,
            last + 1,
            "the resend starts where the registry said: {text}"
        );
    }
    assert!(
        log[4].at.duration_since(log[3].at) >= Duration::from_millis(950),
        "Retry-After: 1 was honoured: {text}"
    );
    assert!(
        log[6..]
            .iter()
            .all(|l| l.method == "PATCH" && l.status == 202),
        "the other chunks went up once each: {text}"
    );
    assert_pushed_whole(&world, &job, &source).await;
}

#[tokio::test]
async fn a_chunk_the_registry_cannot_resume_fails_the_build_clearly_and_moves_no_tag() {
    let world = World::builder().proxy().start().await;
    huge_source(&world);
    // Cut after 5 MiB: distribution 2.8 keeps those bytes, and then refuses the status of
    // the upload (its state says 16 MiB; "upload resumed at wrong offset").
    world.proxy().add_rule(
        Rule::new(Fault::DropRequestAfter(5 << 20), UPLOADS)
            .method("PATCH")
            .after(1)
            .times(1),
    );
    let job = build(&world, huge_build(&world)).await;
    job.expect_failed("registry_unreachable");
    let message = job.0["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot be resumed")
            && message.contains(&format!("failed at byte {}", 16u64 << 20))
            && message.contains("BLOB_UPLOAD_INVALID"),
        "{message}"
    );
    let text = world.proxy().log_text();
    let patches = logged(&world, "PATCH", UPLOADS);
    assert_eq!(patches.len(), 2, "nothing sent blindly again: {text}");
    assert_eq!(logged(&world, "GET", UPLOADS).len(), 1, "{text}");
    assert!(
        logged(&world, "PUT", "/manifests/").is_empty(),
        "no tag moved: {text}"
    );
}

const UPLOADS: &str = "/v2/huge/app/blobs/uploads/";

/// A source folder `huge` with a 66 MiB file that does not compress: one layer past 64 MiB.
fn huge_source(world: &World) -> std::path::PathBuf {
    let source = world.root().join("huge");
    fs::create_dir_all(&source).unwrap();
    fs::write(
        source.join("blob.bin"),
        image::incompressible_bytes(66 << 20, 3),
    )
    .unwrap();
    fs::write(source.join("small"), "small\n").unwrap();
    source
}

fn huge_build(world: &World) -> Value {
    json!({"source": "huge", "target": world.image("huge/app:1"), "compression": "zstd"})
}

/// The big layer is stored whole under its digest, the registry serves (skopeo) the
/// manifest the job reports, and the image pulls back as the source.
async fn assert_pushed_whole(world: &World, job: &Job, source: &Path) {
    let layer = job.result()["layers"][0].clone();
    let size = layer["size"].as_u64().unwrap();
    assert!(size > 64 << 20, "{job:?}");
    let digest = layer["digest"].as_str().unwrap();
    let stored = fs::read(world.registry.blob_file(digest)).unwrap();
    assert_eq!(stored.len() as u64, size);
    assert_eq!(tools::digest_of(&stored), digest);
    drop(stored);
    let served = served(&world.registry, "huge/app:1").await;
    assert_eq!(served.digest, job.result()["digest"].as_str().unwrap());
    assert_skopeo_reads(&world.registry, "huge/app:1", &served);
    let pulled = world
        .pull_ok(&world.image("huge/app:1"), "huge-pulled")
        .await;
    assert_tree(
        &expected_from_source(source, Recorded::default()),
        &pulled.dest(),
        &[],
        "the big build pulled back",
    );
}
