//! Logs, JSON and text: one line per job event, naming the job and the image, never a
//! credential.

use super::*;

/// The lines of a log that are about job `id`.
fn job_lines<'a>(log: &'a str, id: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(id)).collect()
}

/// JSON logs: every line is a JSON object; every line about a job has a `job` field with
/// its id and names the image; queued, started and ended each have their line; the
/// registry password of the job appears nowhere.
#[tokio::test]
async fn json_logs_have_a_line_per_job_event_with_job_and_image_and_no_credential() {
    let world = World::builder()
        .auth(RegistryAuth::basic("alice", PASSWORD))
        .env("HOIST_LOG_FORMAT", "json")
        .start()
        .await;
    world.push(&SMALL, "logs/img:1", Format::Oci);
    let image = world.image("logs/img:1");
    let job = world
        .pull(json!({"image": image, "dest": "logged",
                     "auth": {"username": "alice", "password": PASSWORD}}))
        .await;
    job.expect_succeeded();
    let failed = world
        .pull(
            json!({"image": world.image("logs/missing:1"), "dest": "nope",
                     "auth": {"username": "alice", "password": PASSWORD}}),
        )
        .await;
    failed.expect_failed("manifest_unknown");

    let log = world.hoist.log_text();
    assert!(
        !log.contains(PASSWORD),
        "the registry password is in the log:\n{log}"
    );
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        assert!(
            v.get("message").or_else(|| v.get("msg")).is_some(),
            "a JSON log line without a message: {line}"
        );
    }
    for (id, image) in [
        (job.id(), image.clone()),
        (failed.id(), world.image("logs/missing:1")),
    ] {
        let lines = job_lines(&log, id);
        assert!(
            lines.len() >= 3,
            "queued, started, ended for job {id}:\n{log}"
        );
        for line in &lines {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["job"], id, "the `job` field of {line}");
            assert!(
                line.contains(&image),
                "a log line about job {id} does not name its image {image}: {line}"
            );
        }
        let messages: Vec<String> = lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["message"].to_string())
            .collect();
        for event in ["queued", "started", "ended"] {
            assert!(
                messages.iter().any(|m| m.contains(event)),
                "no `{event}` line for job {id}: {messages:?}"
            );
        }
    }
}

/// Text logs: one line per job event, each with `job=<id>` and the image.
#[tokio::test]
async fn text_logs_have_a_line_per_job_event_with_job_and_image() {
    let world = World::start().await;
    world.push(&SMALL, "logs/img:1", Format::Oci);
    let image = world.image("logs/img:1");
    let job = world.pull_ok(&image, "logged").await;
    let log = world.hoist.log_text();
    let lines = job_lines(&log, job.id());
    for event in ["queued", "started", "ended"] {
        assert!(
            lines.iter().any(|l| l.contains(event)),
            "no `{event}` line for job {}:\n{log}",
            job.id()
        );
    }
    for line in lines {
        assert!(
            line.contains(&format!("job={}", job.id())),
            "job id field: {line}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "escape sequences in a log that is not a terminal: {line:?}"
        );
        assert!(
            line.contains(&image),
            "a log line about job {} does not name its image {image}: {line}",
            job.id()
        );
    }
}
