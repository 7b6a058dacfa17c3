//! The spec on its own: consistent with itself, its examples valid, and a checker that
//! rejects what the spec does not allow (a check that cannot fail is no check).

use std::collections::BTreeSet;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};

use super::spec::{Answer, Spec};

/// The spec is consistent with itself: references resolve, operation ids are unique,
/// every example matches its schema, and each problem response admits its own status only.
#[test]
fn spec_is_consistent_and_its_examples_match_its_schemas() {
    let spec = Spec::load();

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                o.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&spec.doc, &mut all);
    for r in all {
        let target = r.strip_prefix('#').and_then(|p| spec.doc.pointer(p));
        assert!(target.is_some(), "$ref {r:?} resolves to nothing");
    }

    let mut op_ids = BTreeSet::new();
    let mut failures = Vec::new();
    let mut examples_checked = 0;
    for (method, path) in spec.operations() {
        let op = &spec.doc["paths"][&path][method.to_lowercase()];
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(
            op_ids.insert(id.to_string()),
            "{method} {path}: operationId {id:?} missing or repeated"
        );
        assert!(op["summary"].is_string(), "{method} {path}: no summary");
        let mut media_types = Vec::new();
        if let Some(body) = op.get("requestBody") {
            media_types.push(("request body".to_string(), body));
        }
        for (status, response) in op["responses"].as_object().expect("responses") {
            let response = spec.resolve(response).expect("response $ref");
            assert!(
                response["description"].is_string(),
                "{method} {path} → {status}: no description"
            );
            media_types.push((status.clone(), response));

            // A problem response admits its own status (with some code) and no other.
            if let Some(media) = response["content"].get("application/problem+json") {
                let n: u16 = status.parse().expect("numeric status");
                let codes = spec.doc["components"]["schemas"]["ProblemCode"]["enum"]
                    .as_array()
                    .expect("ProblemCode enum");
                let problem = |status: u16, code: &Value| {
                    json!({"type": "urn:hoist:problem:x", "title": "T", "status": status,
                           "detail": "d", "code": code})
                };
                let validator = spec.validator(&media["schema"], status).unwrap();
                let admits = |status: u16| {
                    codes
                        .iter()
                        .any(|c| validator.is_valid(&problem(status, c)))
                };
                assert!(
                    admits(n),
                    "{method} {path} → {status}: its schema admits no problem with status {n}"
                );
                for other in [400, 401, 403, 404, 409, 422, 500, 502, 503] {
                    assert!(
                        other == n || !admits(other),
                        "{method} {path} → {status}: its schema admits status {other}"
                    );
                }
            }
        }
        for (where_, holder) in media_types {
            for (media_type, media) in holder["content"].as_object().into_iter().flatten() {
                let schema = &media["schema"];
                let mut values = Vec::new();
                if let Some(v) = media.get("example") {
                    values.push(("example".to_string(), v));
                }
                for (name, ex) in media["examples"].as_object().into_iter().flatten() {
                    values.push((
                        name.clone(),
                        &spec.resolve(ex).expect("example $ref")["value"],
                    ));
                }
                for (name, value) in values {
                    examples_checked += 1;
                    // A text example is a string; anything else is JSON.
                    let what = format!("{method} {path} {where_} {media_type} example {name}");
                    if let Err(e) = spec.validate(schema, value, &what) {
                        failures.push(e);
                    }
                }
            }
        }
        for param in op["parameters"]
            .as_array()
            .into_iter()
            .chain(spec.doc["paths"][&path]["parameters"].as_array())
            .flatten()
        {
            let param = spec.resolve(param).expect("parameter $ref");
            if let Some(example) = param.get("example") {
                examples_checked += 1;
                let what = format!("{method} {path} parameter {}", param["name"]);
                if let Err(e) = spec.validate(&param["schema"], example, &what) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        examples_checked >= 20,
        "only {examples_checked} examples checked"
    );
}

/// The checker itself fails on answers that break the spec (a check that cannot fail is
/// no check).
#[test]
fn checker_rejects_answers_the_spec_does_not_allow() {
    let mut spec = Spec::load();
    let answer = |status: u16, content_type: &str, body: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, content_type.parse().unwrap());
        Answer {
            status,
            headers,
            body: body.as_bytes().to_vec(),
        }
    };
    let job = json!({
        "id": "0b9e1b8e-8d5c-4a3e-9c1e-2f1d4f6a7b8c", "kind": "pull", "status": "failed",
        "created_at": "2025-05-01T10:00:00.000Z", "finished_at": "2025-05-01T10:00:01.000Z",
        "request": {"image": "x", "dest": "y", "force": false, "cache": "use", "layout": "rootfs"},
        "error": {"code": "registry_unreachable", "message": "m"},
    });
    let ok = |v: &Value| answer(200, "application/json", &v.to_string());
    spec.try_check("GET", "/jobs/{id}", &ok(&job))
        .expect("a valid job is accepted");

    let mut broken = Vec::new();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut j = job.clone();
        f(&mut j);
        j
    };
    broken.push(with(&|j| j["status"] = json!("done")));
    broken.push(with(&|j| {
        j["request"]["auth"] = json!({"username": "u", "password": "p"})
    }));
    broken.push(with(&|j| {
        j.as_object_mut().unwrap().remove("error");
    }));
    broken.push(with(&|j| j["error"]["code"] = json!("no_such_code")));
    broken.push(with(&|j| j["created_at"] = json!("yesterday")));
    broken.push(with(&|j| j["result"] = json!({"image": "x"})));
    for j in &broken {
        assert!(
            spec.try_check("GET", "/jobs/{id}", &ok(j)).is_err(),
            "accepted a job that breaks the spec: {j}"
        );
    }
    let problem = json!({"type": "urn:hoist:problem:job_not_found", "title": "Not Found", "status": 404,
                         "detail": "d", "code": "job_not_found"});
    let p = |status: u16, v: &Value| answer(status, "application/problem+json", &v.to_string());
    spec.try_check("GET", "/jobs/{id}", &p(404, &problem))
        .expect("a valid problem is accepted");
    for (status, body, content_type) in [
        (418, problem.clone(), "application/problem+json"), // status not listed
        (404, problem.clone(), "application/json"),         // wrong content type
        (
            404,
            json!({"code": "dest_exists", "status": 404, "title": "t", "detail": "d", "type": "urn:hoist:problem:dest_exists"}),
            "application/problem+json",
        ), // code of another status
        (500, problem.clone(), "application/problem+json"), // status field ≠ HTTP status
    ] {
        let a = answer(status, content_type, &body.to_string());
        assert!(
            spec.try_check("GET", "/jobs/{id}", &a).is_err(),
            "accepted {status} {content_type} {body}"
        );
    }
    // A 202 without its required Location header.
    let queued = json!({"id": "0b9e1b8e-8d5c-4a3e-9c1e-2f1d4f6a7b8c", "kind": "pull",
        "status": "queued", "created_at": "2025-05-01T10:00:00.000Z",
        "request": {"image": "x", "dest": "y", "force": false, "cache": "use", "layout": "rootfs"}});
    assert!(
        spec.try_check(
            "POST",
            "/pulls",
            &answer(202, "application/json", &queued.to_string())
        )
        .is_err(),
        "accepted a 202 without Location"
    );
    // An operation the spec does not have.
    assert!(spec.try_check("PUT", "/jobs", &ok(&json!([]))).is_err());
    // The documented events pass; others do not.
    let progress = json!({"phase": "downloading", "layers_done": 0, "layers_total": 1,
                          "bytes_done": 5, "bytes_total": 9});
    let events = |progress: &Value| {
        let stream = format!(
            "event: state\ndata: {job}\n\n: keep-alive\n\nevent: progress\ndata: {progress}\n\n"
        );
        answer(200, "text/event-stream", &stream)
    };
    let parsed = spec
        .try_check("GET", "/jobs/{id}/events", &events(&progress))
        .expect("documented events are accepted");
    assert_eq!(parsed.as_array().map(Vec::len), Some(2), "{parsed}");
    for bad in [json!({"phase": 1}), json!({"phase": "x"}), json!(job)] {
        assert!(
            spec.try_check("GET", "/jobs/{id}/events", &events(&bad))
                .is_err(),
            "accepted a progress event {bad}"
        );
    }
}
