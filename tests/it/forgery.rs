//! Bad input is a 4xx problem, and no request a web page can forge gets through (issue 7,
//! points 5 and 6). Each refusal is checked through the real daemon: its status, its
//! `application/problem+json` body and stable `code`, and that nothing happened because of
//! it (no job, no registry request through the fault proxy, nothing on disk).

use crate::common;

use std::io::{Read, Write};
use std::time::Duration;

use common::tree::{snapshot, snapshot_diff};
use common::{World, expect_problem, jobs_of};
use reqwest::header::{CONTENT_TYPE, HOST, ORIGIN};
use serde_json::{Value, json};

/// A world whose registry is behind the fault proxy, so a test can say "the registry was
/// never asked".
async fn proxied() -> World {
    World::builder().proxy().start().await
}

/// Panics unless no job exists and no registry request was made.
async fn nothing_happened(world: &World) {
    let (status, list) = world.get_json("/jobs").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        jobs_of(&list),
        Vec::<Value>::new(),
        "a refused request made a job"
    );
    if let Some(proxy) = &world.proxy {
        assert!(
            proxy.log().is_empty(),
            "a refused request reached the registry:\n{}",
            proxy.log_text()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Point 5: bad input

#[tokio::test]
async fn dest_with_nul_or_control_characters_is_400_invalid_dest_before_any_registry_is_asked() {
    let world = proxied().await;
    let before = snapshot(world.dir(), &["hoist", "registry"]);
    for dest in ["a\u{0}b", "tree\u{0}", "a\nb", "x\u{1b}[31m"] {
        let body = json!({"image": world.image("x/y:1"), "dest": dest});
        let problem = expect_problem(world.post_pull(&body).await, 400, Some("invalid_dest")).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("control character"),
            "{problem}"
        );
    }
    let abs = format!("{}/a\u{0}b", world.root().display());
    let body = json!({"image": world.image("x/y:1"), "dest": abs});
    expect_problem(world.post_pull(&body).await, 400, Some("invalid_dest")).await;
    nothing_happened(&world).await;
    assert_eq!(
        snapshot_diff(&before, &snapshot(world.dir(), &["hoist", "registry"])),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn platform_with_dot_parts_is_400_invalid_platform_wherever_a_platform_is_taken() {
    let world = proxied().await;
    std::fs::create_dir_all(world.root().join("src")).unwrap();
    for platform in [
        "linux/../..",
        "../amd64",
        "linux/amd64/..",
        "linux/./v8",
        "linux/.x",
    ] {
        let body = json!({"image": world.image("x/y:1"), "dest": "d", "platform": platform});
        expect_problem(world.post_pull(&body).await, 400, Some("invalid_platform")).await;
        let build = json!({"source": "src", "target": world.image("x/y:1"), "platform": platform});
        let resp = world.post("/builds").json(&build).send().await.unwrap();
        expect_problem(resp, 400, Some("invalid_platform")).await;
        for endpoint in ["/digest", "/inspect"] {
            let resp = world
                .get(endpoint)
                .query(&[
                    ("image", world.image("x/y:1").as_str()),
                    ("platform", platform),
                ])
                .send()
                .await
                .unwrap();
            expect_problem(resp, 400, Some("invalid_platform")).await;
        }
    }
    nothing_happened(&world).await;
}

/// Sends `request` as is on a new connection; the answer's head and its body as JSON.
/// (reqwest cannot send a request target over 64 KiB, nor a broken header.)
fn raw(world: &World, request: &[u8]) -> (String, Value) {
    let mut conn = std::net::TcpStream::connect(world.hoist.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(request).unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    (head.to_ascii_lowercase(), body)
}

#[tokio::test]
async fn query_strings_over_8_kib_are_414_problems_whatever_their_length() {
    let world = World::start().await;
    let resp = world
        .get("/jobs")
        .query(&[("status", "a".repeat(9 * 1024).as_str())])
        .send()
        .await
        .unwrap();
    expect_problem(resp, 414, Some("uri_too_long")).await;
    // Past hyper's own limit (64 KiB), where it answers before any router.
    for len in [100 * 1000, 200 * 1000] {
        let request = format!(
            "GET /jobs?status={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "a".repeat(len)
        );
        let (head, body) = raw(&world, request.as_bytes());
        assert!(head.starts_with("http/1.1 414 "), "{head}");
        assert!(
            head.contains("content-type: application/problem+json"),
            "{head}"
        );
        assert_eq!(
            (&body["status"], &body["code"]),
            (&json!(414), &json!("uri_too_long"))
        );
    }
    // Below the bound, the query is read (and this one refused for what it says).
    let resp = world
        .get("/jobs")
        .query(&[("status", "a".repeat(7 * 1024).as_str())])
        .send()
        .await
        .unwrap();
    expect_problem(resp, 400, Some("invalid_query")).await;
    assert_eq!(world.get_json("/healthz").await.0, 200);
}

#[tokio::test]
async fn requests_hyper_cannot_parse_are_400_problems() {
    let world = World::start().await;
    let (head, body) = raw(
        &world,
        b"GET /jobs HTTP/1.1\r\nHost: localhost\r\nno colon here\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 400 "), "{head}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert_eq!(
        (&body["status"], &body["code"]),
        (&json!(400), &json!("invalid_http"))
    );
}

#[tokio::test]
async fn duplicate_keys_are_400_duplicate_key_at_any_depth() {
    let world = proxied().await;
    let image = world.image("x/y:1");
    for body in [
        format!(r#"{{"image": "{image}", "dest": "a", "dest": "b"}}"#),
        format!(r#"{{"image": "{image}", "image": "{image}", "dest": "a"}}"#),
        format!(
            r#"{{"image": "{image}", "dest": "a", "auth": {{"username": "u", "username": "v", "password": "p"}}}}"#
        ),
    ] {
        let resp = world
            .post("/pulls")
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let problem = expect_problem(resp, 400, Some("duplicate_key")).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("duplicate key"),
            "{problem} for {body}"
        );
    }
    std::fs::create_dir_all(world.root().join("src")).unwrap();
    let build = format!(
        r#"{{"source": "src", "target": "{image}", "config": {{"labels": {{"k": "1", "k": "2"}}}}}}"#
    );
    let resp = world
        .post("/builds")
        .header(CONTENT_TYPE, "application/json")
        .body(build)
        .send()
        .await
        .unwrap();
    expect_problem(resp, 400, Some("duplicate_key")).await;
    nothing_happened(&world).await;
}

// ---------------------------------------------------------------------------------------
// Point 6: nothing a web page can forge

#[tokio::test]
async fn bodies_that_are_not_application_json_are_415() {
    let world = proxied().await;
    let body = json!({"image": world.image("x/y:1"), "dest": "forged"}).to_string();
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        for path in ["/pulls", "/builds"] {
            let resp = world
                .post(path)
                .header(CONTENT_TYPE, content_type)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let problem = expect_problem(resp, 415, Some("unsupported_media_type")).await;
            if content_type == "application/x-www-form-urlencoded" {
                assert!(
                    problem["detail"]
                        .as_str()
                        .unwrap()
                        .contains("-H 'Content-Type: application/json'"),
                    "the 415 for curl's default type says what to add: {problem}"
                );
            }
        }
    }
    nothing_happened(&world).await;
    assert!(!world.root().join("forged").exists());
    // A body without a content type is read as JSON (this one is refused for its dest).
    let resp = world
        .post("/pulls")
        .body(json!({"image": world.image("x/y:1"), "dest": "../x"}).to_string())
        .send()
        .await
        .unwrap();
    expect_problem(resp, 400, Some("invalid_dest")).await;
    // And application/json with parameters is JSON.
    let resp = world
        .post("/pulls")
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(json!({"image": world.image("x/y:1"), "dest": "../x"}).to_string())
        .send()
        .await
        .unwrap();
    expect_problem(resp, 400, Some("invalid_dest")).await;
}

#[tokio::test]
async fn requests_a_browser_marks_cross_site_are_403() {
    let world = proxied().await;
    let body = json!({"image": world.image("x/y:1"), "dest": "forged"});
    let port = world.hoist.addr.port();
    let forged: [(&str, String); 6] = [
        ("origin", "http://evil.example".into()),
        ("origin", "null".into()),
        ("origin", format!("http://localhost:{}", port + 1)),
        ("origin", format!("http://rebound.example:{port}")),
        ("sec-fetch-site", "cross-site".into()),
        ("sec-fetch-site", "same-site".into()),
    ];
    for (name, value) in &forged {
        let resp = world
            .post("/pulls")
            .header(*name, value)
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_problem(resp, 403, Some("cross_site_request")).await;
        let resp = world
            .get("/jobs")
            .header(*name, value)
            .send()
            .await
            .unwrap();
        expect_problem(resp, 403, Some("cross_site_request")).await;
    }
    nothing_happened(&world).await;
    assert!(!world.root().join("forged").exists());
    // The daemon's own origin, and browser navigation, are fine.
    for (name, value) in [
        ("origin", format!("http://{}", world.hoist.addr)),
        ("sec-fetch-site", "same-origin".into()),
        ("sec-fetch-site", "none".into()),
    ] {
        let resp = world
            .get("/jobs")
            .header(name, &value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}: {value}");
    }
}

#[tokio::test]
async fn host_headers_of_other_names_are_421() {
    let world = World::builder()
        .env("HOIST_ALLOWED_HOSTS", "hoist.example, Build-Box.Example.")
        .proxy()
        .start()
        .await;
    let port = world.hoist.addr.port();
    let body = json!({"image": world.image("x/y:1"), "dest": "forged"});
    for host in [
        format!("rebound.example:{port}"),
        "rebound.example".to_string(),
        format!("localhost.rebound.example:{port}"),
        format!("10.1.2.3:{port}"),
    ] {
        let resp = world
            .post("/pulls")
            .header(HOST, &host)
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_problem(resp, 421, Some("misdirected_request")).await;
        let resp = world
            .get("/healthz")
            .header(HOST, &host)
            .send()
            .await
            .unwrap();
        expect_problem(resp, 421, Some("misdirected_request")).await;
    }
    nothing_happened(&world).await;
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("127.0.0.2:{port}"),
        format!("[::1]:{port}"),
        format!("hoist.example:{port}"),
        "build-box.example".to_string(),
    ] {
        let resp = world.get("/jobs").header(HOST, &host).send().await.unwrap();
        assert_eq!(resp.status(), 200, "Host: {host}");
    }
    // A page served under an allowed name may use the API from there.
    let resp = world
        .get("/jobs")
        .header(HOST, "hoist.example")
        .header(ORIGIN, "http://hoist.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
