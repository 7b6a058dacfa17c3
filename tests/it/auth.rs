//! Registries that want credentials: htpasswd (basic) and token auth (a token server
//! issuing RS256 JWTs the registry verifies). Credentials come from the request (used for
//! that job only, never echoed, stored or logged), from `DOCKER_CONFIG`'s `auths`, or from
//! a credential helper it names; wrong or missing ones fail with `unauthorized`.

use crate::common;

use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use common::{
    Format, Image, RegistryAuth, Rule, World, assert_same_tree, expect_problem, fixtures,
};
use serde_json::json;

static IMAGE: LazyLock<Image> = LazyLock::new(|| fixtures::small("auth"));
const PASSWORD: &str = "correct-horse-battery-staple";

/// Everything the daemon shows or keeps about jobs and itself, as text.
async fn everything_visible(world: &World, id: &str) -> String {
    let (_, job) = world.get_json(&format!("/jobs/{id}")).await;
    let (_, jobs) = world.get_json("/jobs").await;
    let events = world
        .get(&format!("/jobs/{id}/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut db = String::new();
    for entry in std::fs::read_dir(&world.hoist.data_dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            db.push_str(&String::from_utf8_lossy(
                &std::fs::read(entry.path()).unwrap(),
            ));
        }
    }
    format!("{job}\n{jobs}\n{events}\n{}\n{db}", world.hoist.log_text())
}

async fn pulls_with_request_credentials(auth: RegistryAuth) {
    let world = World::builder().auth(auth).start().await;
    world.push(&IMAGE, "private/img:1", Format::Oci);
    let image = world.image("private/img:1");

    let job = world
        .pull(json!({"image": image, "dest": "ok",
                     "auth": {"username": "alice", "password": PASSWORD}}))
        .await;
    job.expect_succeeded();
    assert_same_tree(&IMAGE.unpack_reference().rootfs, &job.dest());
    assert!(
        job.0["request"].get("auth").is_none(),
        "auth echoed: {job:?}"
    );
    let seen = everything_visible(&world, job.id()).await;
    assert!(
        !seen.contains(PASSWORD),
        "the password shows in the job, the list, the events, the database or the log"
    );

    let job = world
        .pull(json!({"image": image, "dest": "anonymous"}))
        .await;
    job.expect_failed("unauthorized");
    let job = world
        .pull(json!({"image": image, "dest": "wrong",
                     "auth": {"username": "alice", "password": "wrong"}}))
        .await;
    job.expect_failed("unauthorized");
    for dest in ["anonymous", "wrong"] {
        assert!(!world.root().join(dest).exists());
    }
    // /digest has no credentials but DOCKER_CONFIG's (none here): 403, not 401
    let resp = world
        .get("/digest")
        .query(&[("image", &image)])
        .send()
        .await
        .unwrap();
    expect_problem(resp, 403, Some("unauthorized")).await;
}

#[tokio::test]
async fn basic_auth_registry_pulls_with_request_credentials_only() {
    pulls_with_request_credentials(RegistryAuth::basic("alice", PASSWORD)).await;
}

#[tokio::test]
async fn token_auth_registry_pulls_with_request_credentials_only() {
    pulls_with_request_credentials(RegistryAuth::token("alice", PASSWORD)).await;
}

#[tokio::test]
async fn token_server_is_asked_for_a_pull_scope_on_the_repository() {
    let world = World::builder()
        .auth(RegistryAuth::token("alice", PASSWORD))
        .start()
        .await;
    world.push(&IMAGE, "private/scoped:1", Format::Oci);
    let before = world
        .registry
        .token_server
        .as_ref()
        .unwrap()
        .requests()
        .len();
    world
        .pull(
            json!({"image": world.image("private/scoped:1"), "dest": "scoped",
                     "auth": {"username": "alice", "password": PASSWORD}}),
        )
        .await
        .expect_succeeded();
    let asked: Vec<_> = world.registry.token_server.as_ref().unwrap().requests()[before..].to_vec();
    assert!(
        asked.iter().any(|r| r.granted
            && r.service.as_deref() == Some("hoist-test-registry")
            && r.scopes
                .iter()
                .any(|s| s == "repository:private/scoped:pull")),
        "the daemon's token requests: {asked:#?}"
    );
    assert!(
        asked
            .iter()
            .all(|r| r.scopes.iter().all(|s| !s.contains("push"))),
        "a pull asks for no push scope: {asked:#?}"
    );
}

fn docker_auth(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[tokio::test]
async fn docker_config_auths_are_used_for_pulls_and_digests() {
    for auth in [
        RegistryAuth::basic("carol", PASSWORD),
        RegistryAuth::token("carol", PASSWORD),
    ] {
        let mut world = World::builder().auth(auth).start().await;
        // the registry's port is known once it runs: write the config, then restart
        let config =
            json!({"auths": {world.registry.host(): {"auth": docker_auth("carol", PASSWORD)}}});
        std::fs::write(
            world.hoist.docker_config_dir.join("config.json"),
            config.to_string(),
        )
        .unwrap();
        world.restart_hoist();
        world.push(&IMAGE, "private/img:1", Format::Oci);
        let job = world
            .pull_ok(&world.image("private/img:1"), "from-config")
            .await;
        assert_same_tree(&IMAGE.unpack_reference().rootfs, &job.dest());
        let resp = world
            .get("/digest")
            .query(&[("image", world.image("private/img:1"))])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
}

#[tokio::test]
async fn docker_config_credential_helper_is_asked() {
    let world = World::builder()
        .auth(RegistryAuth::token("dave", PASSWORD))
        .start()
        .await;
    let log = world.dir().join("helper.log");
    let helper = format!(
        "#!/bin/sh\nread server\necho \"$1 $server\" >> '{}'\n\
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"dave\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n",
        log.display()
    );
    let script = world.dir().join("hoist/bin/docker-credential-hoisttest");
    std::fs::write(&script, helper).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        world.hoist.docker_config_dir.join("config.json"),
        json!({"credHelpers": {world.registry.host(): "hoisttest"}}).to_string(),
    )
    .unwrap();
    let mut world = world;
    world.restart_hoist();
    world.push(&IMAGE, "private/img:1", Format::Oci);
    world.pull_ok(&world.image("private/img:1"), "helped").await;
    let asked = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        asked
            .lines()
            .any(|l| l.starts_with("get ") && l.contains(&world.registry.host())),
        "the helper was asked `get` for {}: {asked:?}",
        world.registry.host()
    );
}

#[tokio::test]
async fn a_queued_job_with_credentials_fails_with_credentials_lost_after_a_restart() {
    let mut world = World::builder()
        .auth(RegistryAuth::basic("erin", PASSWORD))
        .proxy()
        .workers(1)
        .start()
        .await;
    let big = fixtures::big(1_000_000, 9);
    world.push(&big, "private/big:1", Format::Oci);
    world.push(&IMAGE, "private/img:1", Format::Oci);
    world.proxy().add_rule(Rule::slow_gets("/blobs/", 100_000));
    let auth = json!({"username": "erin", "password": PASSWORD});
    let running = world
        .submit_pull(
            json!({"image": world.image("private/big:1"), "dest": "running", "auth": auth}),
        )
        .await;
    world
        .wait_until(running.id(), Duration::from_secs(30), |j| {
            j.status() == "running"
        })
        .await;
    let queued = world
        .submit_pull(json!({"image": world.image("private/img:1"), "dest": "queued", "auth": auth}))
        .await;
    assert_eq!(world.job(queued.id()).await.status(), "queued");
    world.hoist.kill();
    world.restart_hoist();
    world.proxy().clear_rules();
    for id in [running.id(), queued.id()] {
        world.wait_job(id).await.expect_failed("credentials_lost");
    }
    assert!(!world.root().join("running").exists());
    assert!(!world.root().join("queued").exists());
    assert!(
        !everything_visible(&world, queued.id())
            .await
            .contains(PASSWORD)
    );
}
