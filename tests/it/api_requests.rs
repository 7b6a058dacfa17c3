//! Requests the daemon must refuse, and how: each is an `application/problem+json`
//! answer with the status and stable `code` of the contract (API.md, openapi.yaml), and
//! leaves nothing on disk. Also `dest` rules (roots, `..`, symlinks, existing trees with
//! and without `force`), the API token, and the router's own 404/405.

use crate::common;

use std::sync::LazyLock;

use common::tree::{snapshot, snapshot_diff};
use common::{Format, Image, World, assert_same_tree, expect_problem, fixtures};
use reqwest::Method;
use serde_json::json;

static SMALL: LazyLock<Image> = LazyLock::new(|| fixtures::small("api"));

#[tokio::test]
async fn healthz_answers_ok() {
    let world = World::start().await;
    let (status, body) = world.get_json("/healthz").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn body_that_is_not_json_is_400_invalid_json() {
    let world = World::start().await;
    for body in ["{\"image\": ", "not json", ""] {
        let resp = world
            .post("/pulls")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        expect_problem(resp, 400, Some("invalid_json")).await;
    }
}

#[tokio::test]
async fn unknown_missing_or_mistyped_fields_are_400_invalid_request() {
    let world = World::start().await;
    let image = world.image("x/y:1");
    for (body, field) in [
        (json!({"image": image, "dest": "d", "bogus": 1}), "bogus"),
        (
            json!({"image": image, "dest": "d", "auth": {"username": "u", "password": "p", "token": "t"}}),
            "token",
        ),
        (json!({"image": image}), "dest"),
        (json!({"dest": "d"}), "image"),
        (
            json!({"image": image, "dest": "d", "force": "yes"}),
            "force",
        ),
        (
            json!({"image": image, "dest": "d", "cache": "sometimes"}),
            "cache",
        ),
        (json!({"image": image, "dest": 5}), "dest"),
    ] {
        let problem =
            expect_problem(world.post_pull(&body).await, 400, Some("invalid_request")).await;
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "the detail names `{field}`: {problem} (for {body})"
        );
    }
    assert!(world.cached_blobs().is_empty());
}

#[tokio::test]
async fn invalid_references_are_400_invalid_reference() {
    let world = World::start().await;
    for image in [
        "",
        "Upper/Case:1",
        "repo@sha256:abc",
        "has space:1",
        ":tag-only",
        "repo:",
        "127.0.0.1:5000/repo:tag:extra",
        "repo:bad/tag",
        "repo@md5:0123456789abcdef",
        "//double-slash",
    ] {
        let problem = expect_problem(
            world.post_pull(&json!({"image": image, "dest": "d"})).await,
            400,
            Some("invalid_reference"),
        )
        .await;
        assert!(!problem["detail"].as_str().unwrap().is_empty());
        let resp = world
            .get("/digest")
            .query(&[("image", image)])
            .send()
            .await
            .unwrap();
        expect_problem(resp, 400, Some("invalid_reference")).await;
    }
    let resp = world.get("/digest").send().await.unwrap();
    expect_problem(resp, 400, Some("invalid_reference")).await;
}

#[tokio::test]
async fn invalid_platforms_are_400_invalid_platform() {
    let world = World::start().await;
    for platform in [
        "linux",
        "linux/",
        "/amd64",
        "linux/arm64/v8/extra",
        "linux//v8",
    ] {
        let body = json!({"image": world.image("x/y:1"), "dest": "d", "platform": platform});
        expect_problem(world.post_pull(&body).await, 400, Some("invalid_platform")).await;
    }
}

#[tokio::test]
async fn dest_with_dotdot_or_empty_is_400_invalid_dest() {
    let world = World::start().await;
    let before = snapshot(world.dir(), &["hoist", "registry"]);
    for dest in [
        "".to_owned(),
        "../escape".to_owned(),
        "a/../../escape".to_owned(),
        "a/../b".to_owned(),
        format!("{}/../outside/x", world.root().display()),
    ] {
        let body = json!({"image": world.image("x/y:1"), "dest": dest});
        expect_problem(world.post_pull(&body).await, 400, Some("invalid_dest")).await;
    }
    assert_eq!(
        snapshot_diff(&before, &snapshot(world.dir(), &["hoist", "registry"])),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn dest_outside_every_root_or_a_root_itself_is_403_dest_outside_roots() {
    let world = World::start().await;
    // a symlink inside a root that leads out of it: followed before the check
    std::os::unix::fs::symlink(world.outside(), world.root().join("way-out")).unwrap();
    let before = snapshot(world.dir(), &["hoist", "registry"]);
    for dest in [
        world.outside().join("x"),
        std::path::PathBuf::from("/tmp/hoist-test-not-a-root"),
        world.root().to_path_buf(),
        world.root2().to_path_buf(),
        world.root().join("way-out/x"),
    ] {
        let body = json!({"image": world.image("x/y:1"), "dest": dest});
        expect_problem(
            world.post_pull(&body).await,
            403,
            Some("dest_outside_roots"),
        )
        .await;
    }
    let rel = json!({"image": world.image("x/y:1"), "dest": "way-out/y"});
    expect_problem(world.post_pull(&rel).await, 403, Some("dest_outside_roots")).await;
    assert_eq!(
        snapshot_diff(&before, &snapshot(world.dir(), &["hoist", "registry"])),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn absolute_dest_in_the_second_root_is_used_as_is() {
    let world = World::start().await;
    world.push(&SMALL, "api/img:1", Format::Oci);
    let dest = world.root2().join("deeper/tree");
    let job = world
        .pull(json!({"image": world.image("api/img:1"), "dest": dest}))
        .await;
    job.expect_succeeded();
    assert_eq!(job.dest(), dest);
    assert_same_tree(&SMALL.unpack_reference().rootfs, &dest);
}

#[tokio::test]
async fn existing_dest_is_409_dest_exists_and_force_replaces_it() {
    let world = World::start().await;
    world.push(&SMALL, "api/img:1", Format::Oci);
    let dest = world.root().join("taken");
    std::fs::create_dir_all(dest.join("old/inner")).unwrap();
    std::fs::write(dest.join("old/inner/file"), "old tree").unwrap();
    let before = snapshot(&dest, &[]);
    let body = json!({"image": world.image("api/img:1"), "dest": "taken"});
    expect_problem(world.post_pull(&body).await, 409, Some("dest_exists")).await;
    // an existing file is as taken as a folder
    std::fs::write(world.root().join("a-file"), "x").unwrap();
    let body_file = json!({"image": world.image("api/img:1"), "dest": "a-file"});
    expect_problem(world.post_pull(&body_file).await, 409, Some("dest_exists")).await;
    assert_eq!(
        snapshot_diff(&before, &snapshot(&dest, &[])),
        Vec::<String>::new()
    );

    let job = world
        .pull(json!({"image": world.image("api/img:1"), "dest": "taken", "force": true}))
        .await;
    job.expect_succeeded();
    assert_eq!(job.0["request"]["force"], true);
    // the old tree is gone, not merged
    assert_same_tree(&SMALL.unpack_reference().rootfs, &dest);
    // and no staging folder is left beside it
    let mut names: Vec<String> = std::fs::read_dir(world.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["a-file", "taken"]);
}

#[tokio::test]
async fn unknown_layouts_are_400_invalid_request() {
    let world = World::start().await;
    let body = json!({"image": world.image("x/y:1"), "dest": "d", "layout": "tarball"});
    expect_problem(world.post_pull(&body).await, 400, Some("invalid_request")).await;
}

#[tokio::test]
async fn unknown_job_is_404_job_not_found() {
    let world = World::start().await;
    let id = "0b9e1b8e-8d5c-4a3e-9c1e-2f1d4f6a7b8c";
    let resp = world.get(&format!("/jobs/{id}")).send().await.unwrap();
    expect_problem(resp, 404, Some("job_not_found")).await;
    let resp = world.delete(&format!("/jobs/{id}")).send().await.unwrap();
    expect_problem(resp, 404, Some("job_not_found")).await;
    let resp = world
        .get(&format!("/jobs/{id}/events"))
        .send()
        .await
        .unwrap();
    expect_problem(resp, 404, Some("job_not_found")).await;
    let resp = world.get("/jobs/not-a-uuid").send().await.unwrap();
    expect_problem(resp, 404, Some("job_not_found")).await;
}

#[tokio::test]
async fn bad_query_parameters_are_400_invalid_query() {
    let world = World::start().await;
    for path in [
        "/jobs?status=done",
        "/jobs?kind=push",
        "/jobs?bogus=1",
        "/jobs?limit=many",
        "/cache?x=1",
    ] {
        let resp = world.get(path).send().await.unwrap();
        expect_problem(resp, 400, Some("invalid_query")).await;
    }
    let resp = world
        .get("/digest")
        .query(&[("image", world.image("x/y:1").as_str()), ("bogus", "1")])
        .send()
        .await
        .unwrap();
    expect_problem(resp, 400, Some("invalid_query")).await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let world = World::start().await;
    let resp = world.get("/no/such/endpoint").send().await.unwrap();
    expect_problem(resp, 404, Some("not_found")).await;
    let resp = world.get("/pulls").send().await.unwrap();
    expect_problem(resp, 405, Some("method_not_allowed")).await;
    let resp = world.delete("/healthz").send().await.unwrap();
    expect_problem(resp, 405, Some("method_not_allowed")).await;
}

#[tokio::test]
async fn api_token_is_needed_for_everything_but_healthz() {
    let world = World::builder().api_token("s3cret-api-token").start().await;
    let resp = world
        .anonymous(Method::GET, "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for (method, path) in [
        (Method::GET, "/jobs"),
        (Method::GET, "/cache"),
        (Method::DELETE, "/cache"),
        (Method::POST, "/pulls"),
        (Method::GET, "/metrics"),
        (Method::GET, "/openapi.yaml"),
    ] {
        let resp = world.anonymous(method.clone(), path).send().await.unwrap();
        assert_eq!(
            resp.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"hoist\""),
            "{method} {path}"
        );
        expect_problem(resp, 401, Some("unauthorized")).await;
        let resp = world
            .anonymous(method.clone(), path)
            .bearer_auth("wrong-token")
            .send()
            .await
            .unwrap();
        expect_problem(resp, 401, Some("unauthorized")).await;
    }
    let (status, _) = world.get_json("/jobs").await; // with the token
    assert_eq!(status, 200);
}

#[tokio::test]
async fn openapi_and_metrics_are_served() {
    let world = World::start().await;
    let resp = world.get("/openapi.yaml").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().starts_with("openapi: 3.1"));
    let resp = world.get("/metrics").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = resp.text().await.unwrap();
    for series in ["hoist_jobs", "hoist_cache_hits_total", "hoist_cache_bytes"] {
        assert!(text.contains(series), "metrics lack {series}:\n{text}");
    }
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_dir_refuses_to_start() {
    let world = World::start().await;
    // Why it stopped goes through the log: under the journal a `<3>` (error) line, with
    // `--log-format json` a JSON line, and plain text otherwise.
    for (journal, format) in [(false, "text"), (true, "text"), (false, "json")] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hoist"));
        cmd.args(["serve", "--log-format", format])
            .env_clear()
            .env("HOIST_LISTEN", "127.0.0.1:0")
            .env("HOIST_DATA_DIR", &world.hoist.data_dir)
            .env("HOIST_CACHE_DIR", &world.hoist.cache_dir)
            .env("HOIST_ROOTS", world.root())
            .env("DOCKER_CONFIG", world.dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if journal {
            cmd.env("JOURNAL_STREAM", "8:12345");
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("a second daemon on the same data dir kept running");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "second daemon exited 0: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr
            .lines()
            .find(|l| l.contains("another hoist daemon is using"))
            .unwrap_or_else(|| panic!("no line says why ({journal}, {format}): {stderr}"));
        match (journal, format) {
            (true, _) => assert!(line.starts_with("<3>"), "not an error line: {line}"),
            (false, "json") => {
                let event: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(event["level"], "ERROR", "{line}");
            }
            _ => assert!(line.contains("ERROR"), "{line}"),
        }
    }
    // The first one is untouched.
    let resp = world.get("/healthz").send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
