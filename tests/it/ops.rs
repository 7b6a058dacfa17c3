//! What the people who run hoist rely on around the API: log lines that journald can rank
//! (`JOURNAL_STREAM`), the `HOIST_LOG` filter and a debug line per request, finished jobs
//! deleted after `HOIST_JOB_RETENTION`, `GET /jobs` in pages (`limit`, `before`, a
//! `Link: rel="next"`), and `DELETE /trees` with each of its answers.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Format, Image, Rule, World, expect_problem, fixtures, jobs_of};

static SMALL: LazyLock<Image> = LazyLock::new(|| fixtures::small("ops"));
/// Two layers, the second about 1 MB: seconds through a throttled proxy.
static BIG: LazyLock<Image> = LazyLock::new(|| fixtures::big(1_000_000, 31));
const TOKEN: &str = "ops-api-token-never-logged-9d2e";

/// The log lines (non-empty) that contain every one of `needles`.
fn lines_with<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| !l.trim().is_empty() && needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// Under journald (`JOURNAL_STREAM` set) every line starts with its syslog priority: an
/// info line `<6>`, a job that failed by the daemon's fault (`io_error`) `<3>`, so that
/// `journalctl -p err` finds it.
#[tokio::test]
async fn under_journald_each_line_carries_its_priority() {
    let world = World::builder()
        .env("JOURNAL_STREAM", "8:1234")
        .start()
        .await;
    world.push(&SMALL, "ops/small:1", Format::Oci);
    let image = world.image("ops/small:1");
    let ok = world.pull_ok(&image, "fine").await;
    // a dest below a plain file: the staging folder cannot be made (io_error)
    std::fs::write(world.root().join("a-file"), "not a folder").unwrap();
    let failed = world
        .pull(json!({"image": image, "dest": "a-file/below"}))
        .await;
    failed.expect_failed("io_error");

    let log = world.hoist.log_text();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let priority = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .map(|(n, _)| n);
        assert!(
            matches!(priority, Some("3" | "4" | "6" | "7")),
            "a line without a priority prefix under journald: {line:?}\n{log}"
        );
    }
    let ended_ok = lines_with(&log, &[ok.id(), "job ended"]);
    assert!(
        !ended_ok.is_empty() && ended_ok.iter().all(|l| l.starts_with("<6>")),
        "the succeeded job's end is an info line (<6>): {ended_ok:?}\n{log}"
    );
    let ready = lines_with(&log, &["hoist ready"]);
    assert!(ready.iter().all(|l| l.starts_with("<6>")), "{ready:?}");
    let ended_bad = lines_with(&log, &[failed.id(), "job ended"]);
    assert!(
        !ended_bad.is_empty() && ended_bad.iter().all(|l| l.starts_with("<3>")),
        "the io_error job's end is an error line (<3>): {ended_bad:?}\n{log}"
    );
}

/// `HOIST_LOG=debug` (it wins over the harness's `RUST_LOG=info`) logs each request with
/// its method, path, status and duration; neither the API token nor the query string is
/// in the log.
#[tokio::test]
async fn hoist_log_debug_logs_each_request_with_status_and_duration_and_no_token() {
    let world = World::builder()
        .api_token(TOKEN)
        .env(
            "HOIST_LOG",
            "debug,sqlx=warn,hyper=info,h2=info,reqwest=info",
        )
        .start()
        .await;
    let (status, _) = world.get_json("/jobs/no-such-job").await;
    assert_eq!(status, 404);
    let (status, _) = world.get_json("/jobs?limit=3&kind=pull").await;
    assert_eq!(status, 200);
    let refused = world
        .anonymous(reqwest::Method::GET, "/jobs")
        .bearer_auth("wrong-token-also-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let log = world.hoist.log_text();
    let line = lines_with(&log, &["request", "/jobs/no-such-job"]);
    assert_eq!(line.len(), 1, "one request line:\n{log}");
    for field in [
        "method=GET",
        "path=/jobs/no-such-job",
        "status=404",
        "duration_ms=",
    ] {
        assert!(line[0].contains(field), "{field} in {:?}", line[0]);
    }
    let listed = lines_with(&log, &["request", "path=/jobs ", "status=200"]);
    assert_eq!(listed.len(), 1, "{log}");
    assert!(
        !listed[0].contains("limit=3"),
        "the query string is logged: {}",
        listed[0]
    );
    assert_eq!(
        lines_with(&log, &["request", "path=/jobs ", "status=401"]).len(),
        1,
        "a refused request is logged too:\n{log}"
    );
    for secret in [TOKEN, "wrong-token-also-secret"] {
        assert!(!log.contains(secret), "a token is in the log:\n{log}");
    }
}

/// A finished job is deleted once `HOIST_JOB_RETENTION` seconds have passed since it ended
/// (checked periodically), its tree stays.
#[tokio::test]
async fn finished_jobs_are_deleted_after_the_retention() {
    let world = World::builder()
        .env("HOIST_JOB_RETENTION", "2")
        .start()
        .await;
    world.push(&SMALL, "ops/small:1", Format::Oci);
    let job = world
        .pull_ok(&world.image("ops/small:1"), "kept-tree")
        .await;
    let dest = job.dest();
    let start = Instant::now();
    loop {
        let resp = world
            .get(&format!("/jobs/{}", job.id()))
            .send()
            .await
            .unwrap();
        if resp.status() == 404 {
            expect_problem(resp, 404, Some("job_not_found")).await;
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the job was not deleted 15 s after it ended (retention 2 s)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, list) = world.get_json("/jobs").await;
    assert!(jobs_of(&list).is_empty(), "{list}");
    assert!(dest.join("label").is_file(), "the tree stays");
}

/// `GET /jobs?limit=2` pages newest first; `Link: <…&before=ID>; rel="next"` names the
/// next page while older jobs remain (filters kept); the last page has no `Link`; an
/// unknown `before` is a 404 `job_not_found`.
#[tokio::test]
async fn get_jobs_pages_newest_first_with_a_next_link() {
    let world = World::start().await;
    let mut submitted = Vec::new();
    for i in 0..5 {
        let job = world
            .submit_pull(json!({"image": world.image("ops/missing:1"), "dest": format!("p{i}")}))
            .await;
        submitted.push(job.id().to_owned());
    }
    for id in &submitted {
        world.wait_job(id).await;
    }
    let mut seen = Vec::new();
    let mut next = Some("/jobs?limit=2&kind=pull".to_owned());
    let mut pages = 0;
    while let Some(path) = next.take() {
        let resp = world.get(&path).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let link = resp
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: serde_json::Value = resp.json().await.unwrap();
        let jobs = jobs_of(&page);
        assert!(jobs.len() <= 2, "{page}");
        seen.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        if let Some(link) = link {
            let target = link
                .strip_prefix('<')
                .and_then(|l| l.split_once(">; rel=\"next\""))
                .map(|(t, _)| t.to_owned())
                .unwrap_or_else(|| panic!("not a rel=next link: {link}"));
            assert!(
                target.contains("kind=pull") && target.contains("limit=2"),
                "{target}"
            );
            next = Some(target);
        }
        pages += 1;
        assert!(pages <= 5, "paging does not end");
    }
    submitted.reverse();
    assert_eq!(seen, submitted, "newest first, each job once");
    assert_eq!(pages, 3);

    let resp = world.get("/jobs?before=no-such-job").send().await.unwrap();
    expect_problem(resp, 404, Some("job_not_found")).await;
}

/// `DELETE /trees?dest=` removes a pulled tree: 204, gone, nothing left beside it; again,
/// 404 `dest_not_found`; a symlink is removed, not what it points at.
#[tokio::test]
async fn delete_trees_removes_a_pulled_tree() {
    let world = World::start().await;
    world.push(&SMALL, "ops/small:1", Format::Oci);
    let job = world
        .pull_ok(&world.image("ops/small:1"), "machines/web")
        .await;
    let dest = job.dest();
    let resp = world
        .delete("/trees?dest=machines/web")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204, "{}", resp.text().await.unwrap());
    assert!(dest.symlink_metadata().is_err(), "{dest:?} is still there");
    let left: Vec<_> = std::fs::read_dir(world.root().join("machines"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left beside the tree: {left:?}");

    let resp = world
        .delete("/trees?dest=machines/web")
        .send()
        .await
        .unwrap();
    expect_problem(resp, 404, Some("dest_not_found")).await;

    // an absolute dest in the second root, a symlink to a folder inside the roots
    let target = world.root2().join("target");
    std::fs::create_dir_all(target.join("inner")).unwrap();
    let link = world.root2().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let resp = world
        .delete(&format!("/trees?dest={}", link.display()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(link.symlink_metadata().is_err(), "the symlink is gone");
    assert!(target.join("inner").is_dir(), "its target is not touched");
}

/// Outside the roots, a root itself, a symlink out of the roots (as the tree or on the
/// way to it): 403 `dest_outside_roots`, nothing removed; no `dest`, or `..`: 400.
#[tokio::test]
async fn delete_trees_refuses_what_is_not_inside_the_roots() {
    let world = World::start().await;
    let outside = world.outside();
    std::fs::create_dir_all(outside.join("keep")).unwrap();
    std::fs::write(outside.join("keep/file"), "mine").unwrap();
    std::os::unix::fs::symlink(&outside, world.root().join("out-link")).unwrap();
    let cases = [
        outside.join("keep").display().to_string(),
        world.root().display().to_string(),
        world.root2().display().to_string(),
        "out-link".to_owned(),
        "out-link/keep".to_owned(),
        "out-link/keep/file".to_owned(),
    ];
    for dest in &cases {
        let resp = world
            .delete(&format!("/trees?dest={dest}"))
            .send()
            .await
            .unwrap();
        expect_problem(resp, 403, Some("dest_outside_roots")).await;
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("keep/file")).unwrap(),
        "mine"
    );
    assert!(world.root().join("out-link").symlink_metadata().is_ok());
    assert!(world.root().is_dir() && world.root2().is_dir());

    let resp = world.delete("/trees").send().await.unwrap();
    expect_problem(resp, 400, Some("invalid_dest")).await;
    let resp = world.delete("/trees?dest=a/../b").send().await.unwrap();
    expect_problem(resp, 400, Some("invalid_dest")).await;
}

/// While a pull writes a dest, `DELETE /trees` of it, of a folder holding it or of a
/// tree inside it is a 409 `dest_busy`, and nothing is removed; once the job ended, 204.
#[tokio::test]
async fn delete_trees_is_busy_while_a_job_writes_there() {
    let world = World::builder().proxy().start().await;
    world.push(&BIG, "ops/big:1", Format::Oci);
    world.push(&SMALL, "ops/small:1", Format::Oci);
    let old = world.pull_ok(&world.image("ops/small:1"), "site/app").await;
    world.proxy().add_rule(Rule::slow_gets("/blobs/", 100_000));
    let job = world
        .submit_pull(json!({"image": world.image("ops/big:1"), "dest": "site/app", "force": true}))
        .await;
    world
        .wait_until(job.id(), Duration::from_secs(30), |j| {
            j.status() == "running"
        })
        .await;
    for dest in ["site/app", "site", "site/app/label"] {
        let resp = world
            .delete(&format!("/trees?dest={dest}"))
            .send()
            .await
            .unwrap();
        let body = expect_problem(resp, 409, Some("dest_busy")).await;
        assert!(
            body["detail"].as_str().unwrap().contains(job.id()),
            "the detail names the job: {body}"
        );
    }
    assert!(old.dest().join("label").is_file(), "nothing removed");
    let cancelled = world.cancel_job(job.id()).await;
    assert_eq!(cancelled.status(), "cancelled");
    let resp = world.delete("/trees?dest=site").send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(!world.root().join("site").exists());
}

/// `hoist serve --help` documents the new settings with their variables.
#[test]
fn serve_help_documents_hoist_log_and_job_retention() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--log <",
        "HOIST_LOG",
        "RUST_LOG syntax",
        "--job-retention",
        "HOIST_JOB_RETENTION",
    ] {
        assert!(help.contains(needle), "{needle} in:\n{help}");
    }
}

/// The problem `type` the README shows is the one the daemon sends (`dest_exists`).
#[tokio::test]
async fn readme_shows_the_problem_type_the_daemon_sends() {
    let world = World::start().await;
    std::fs::create_dir_all(world.root().join("taken")).unwrap();
    let resp = world
        .post_pull(&json!({"image": world.image("ops/small:1"), "dest": "taken"}))
        .await;
    let problem = expect_problem(resp, 409, Some("dest_exists")).await;
    let sent = format!("\"type\":{}", problem["type"]);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(&sent),
        "README's problem example does not show the type the daemon sends ({sent})"
    );
}

/// `GET /inspect` of an index whose entry for this platform turns out to be another index
/// (labelled as an image manifest; an entry labelled as an index is never chosen): 422
/// `unsupported_manifest` (the request was valid; the image is what cannot be used), as
/// openapi.yaml says.
#[tokio::test]
async fn inspect_of_an_index_inside_an_index_is_a_422() {
    use crate::common::upload::{host_arch, put_manifest};
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    let world = World::start().await;
    let pushed = world.push(&SMALL, "ops/nested:image", Format::Oci);
    let entry = |media_type: &str, digest: &str, size: usize| {
        json!({"mediaType": media_type, "digest": digest, "size": size,
               "platform": {"os": "linux", "architecture": host_arch()}})
    };
    let inner = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": INDEX,
        "manifests": [entry("application/vnd.oci.image.manifest.v1+json", &pushed.digest, pushed.raw.len())],
    }))
    .unwrap();
    let inner_digest = crate::common::tools::digest_of(&inner);
    put_manifest(&world.registry, "ops/nested", "inner", INDEX, &inner).await;
    let outer = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": INDEX,
        "manifests": [entry("application/vnd.oci.image.manifest.v1+json", &inner_digest, inner.len())],
    }))
    .unwrap();
    put_manifest(&world.registry, "ops/nested", "outer", INDEX, &outer).await;
    let resp = world
        .get(&format!(
            "/inspect?image={}",
            world.image("ops/nested:outer")
        ))
        .send()
        .await
        .unwrap();
    expect_problem(resp, 422, Some("unsupported_manifest")).await;
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    let inspect = &spec[spec.find("\n  /inspect:").unwrap()..];
    let inspect = &inspect[..inspect.find("\n  /cache:").unwrap()];
    assert!(
        inspect.contains("'422':\n          $ref: '#/components/responses/UnsupportedManifest'"),
        "openapi.yaml documents the 422 of /inspect"
    );
}
