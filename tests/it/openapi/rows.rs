//! The answers that need no job and no registry, as a table: one request per row, the
//! operation (or component response) its answer is checked against, its status, and its
//! problem `code` or body.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Method};
use serde_json::{Value, json};

use super::daemon::{Daemon, send};
use super::spec::Spec;

/// What a row's answer must carry besides its status.
pub enum Expect {
    /// A problem with this `code`.
    Code(&'static str),
    /// This JSON body.
    Body(Value),
    /// A text body containing this.
    Contains(&'static str),
    /// A distribution-format error (`/v2/`) with this `errors[0].code`.
    Registry(&'static str),
}

/// One request, the operation (or, for the router's own answers, the component response)
/// its answer is checked against, and the answer it must get.
pub struct Row {
    method: Method,
    /// Path and query.
    path: String,
    /// `Content-Type` and body, for a POST.
    body: Option<(&'static str, String)>,
    header: Option<(&'static str, String)>,
    /// The path template of the operation, or `#Name` for `components.responses.Name`.
    answer_of: &'static str,
    status: u16,
    expect: Expect,
}

pub fn row(
    method: Method,
    path: &str,
    answer_of: &'static str,
    status: u16,
    expect: Expect,
) -> Row {
    Row {
        method,
        path: path.to_string(),
        body: None,
        header: None,
        answer_of,
        status,
        expect,
    }
}

/// `GET path`, answered by the operation `template`.
pub fn get(path: &str, template: &'static str, status: u16, expect: Expect) -> Row {
    row(Method::GET, path, template, status, expect)
}

/// `POST path` of a JSON `body` that is refused with `status` and `code`.
fn refused(path: &'static str, body: impl Into<String>, status: u16, code: &'static str) -> Row {
    Row {
        body: Some(("application/json", body.into())),
        ..row(Method::POST, path, path, status, Expect::Code(code))
    }
}

impl Row {
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Row {
        self.header = Some((name, value.into()));
        self
    }

    fn with_body(mut self, content_type: &'static str, body: &str) -> Row {
        self.body = Some((content_type, body.to_string()));
        self
    }

    /// Sends the row's request and checks the answer against the spec and the row.
    pub async fn run(&self, spec: &mut Spec, http: &Client, d: &Daemon) {
        let mut request = http.request(self.method.clone(), d.url(&self.path));
        if let Some((content_type, body)) = &self.body {
            if !content_type.is_empty() {
                request = request.header(CONTENT_TYPE, *content_type);
            }
            request = request.body(body.clone());
        }
        if let Some((name, value)) = &self.header {
            request = request.header(*name, value);
        }
        let a = send(request).await;
        let what = format!(
            "{} {} {}",
            self.method,
            self.path,
            self.body.as_ref().map_or("", |(_, b)| b.as_str())
        );
        assert_eq!(a.status, self.status, "{what}: {}", a.text());
        let got = match self.answer_of.strip_prefix('#') {
            Some(component) => spec.check_component(component, &a),
            None => spec.check(self.method.as_str(), self.answer_of, &a),
        };
        match &self.expect {
            Expect::Code(code) => assert_eq!(got["code"], *code, "{what}: {got}"),
            Expect::Body(body) => assert_eq!(&got, body, "{what}"),
            Expect::Registry(code) => {
                assert_eq!(got["errors"][0]["code"], *code, "{what}: {got}")
            }
            Expect::Contains(text) => assert!(
                got.as_str().is_some_and(|t| t.contains(text)),
                "{what}: no {text:?} in {got}"
            ),
        }
    }
}

/// The answers that need no job and no registry, as rows.
pub fn rows(d: &Daemon) -> Vec<Row> {
    use Expect::{Body, Code, Contains, Registry};
    let roots = d.root().display().to_string();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let mut rows = vec![
        // hoist as a registry: the answers that ask no upstream.
        get("/v2/", "/v2/", 200, Body(json!({}))),
        get(
            "/v2/Bad/manifests/1",
            "/v2/{path}",
            400,
            Registry("NAME_INVALID"),
        ),
        get(
            "/v2/a/blobs/latest",
            "/v2/{path}",
            400,
            Registry("DIGEST_INVALID"),
        ),
        get(
            "/v2/a/tags/list",
            "/v2/{path}",
            404,
            Registry("UNSUPPORTED"),
        ),
        row(
            Method::PUT,
            "/v2/a/manifests/1",
            "/v2/{path}",
            405,
            Registry("UNSUPPORTED"),
        ),
        row(
            Method::POST,
            "/v2/a/blobs/uploads/",
            "/v2/{path}",
            405,
            Registry("UNSUPPORTED"),
        ),
        row(
            Method::PATCH,
            "/v2/a/blobs/uploads/x",
            "/v2/{path}",
            405,
            Registry("UNSUPPORTED"),
        ),
        row(
            Method::DELETE,
            &format!("/v2/a/blobs/{digest}"),
            "/v2/{path}",
            405,
            Registry("UNSUPPORTED"),
        ),
        // System.
        get("/healthz", "/healthz", 200, Body(json!({"status": "ok"}))),
        get(
            "/metrics",
            "/metrics",
            200,
            Contains("# TYPE hoist_cache_bytes gauge"),
        ),
        row(
            Method::DELETE,
            "/cache",
            "/cache",
            200,
            Body(json!({"removed_blobs": 0, "freed_bytes": 0})),
        ),
        // The router's own answers.
        get("/nope", "#NotFound", 404, Code("not_found")),
        row(
            Method::PUT,
            "/jobs",
            "#MethodNotAllowed",
            405,
            Code("method_not_allowed"),
        ),
        row(
            Method::POST,
            "/healthz",
            "#MethodNotAllowed",
            405,
            Code("method_not_allowed"),
        ),
        // Jobs that do not exist.
        get("/jobs/nope", "/jobs/{id}", 404, Code("job_not_found")),
        get("/jobs?before=nope", "/jobs", 404, Code("job_not_found")),
        // Trees.
        row(
            Method::DELETE,
            "/trees?dest=nothing-here",
            "/trees",
            404,
            Code("dest_not_found"),
        ),
        row(
            Method::DELETE,
            "/trees",
            "/trees",
            400,
            Code("invalid_dest"),
        ),
        row(
            Method::DELETE,
            "/trees?dest=a/../b",
            "/trees",
            400,
            Code("invalid_dest"),
        ),
        row(
            Method::DELETE,
            "/trees?dest=x&force=1",
            "/trees",
            400,
            Code("invalid_query"),
        ),
        row(
            Method::DELETE,
            "/trees?dest=/etc",
            "/trees",
            403,
            Code("dest_outside_roots"),
        ),
        get(
            "/jobs/nope?wait=0.2",
            "/jobs/{id}",
            404,
            Code("job_not_found"),
        ),
        row(
            Method::DELETE,
            "/jobs/nope",
            "/jobs/{id}",
            404,
            Code("job_not_found"),
        ),
        get(
            "/jobs/nope/events",
            "/jobs/{id}/events",
            404,
            Code("job_not_found"),
        ),
        // A body is JSON when it says so or says nothing; a form or text body (which a web
        // page can send across sites) is a 415.
        refused("/pulls", "", 400, "invalid_dest")
            .with_body("", r#"{"image": "alpine", "dest": "../a"}"#),
        // The answers that come before any endpoint.
        get(
            "/jobs",
            "#CrossSiteRequest",
            403,
            Code("cross_site_request"),
        )
        .with_header("origin", "http://evil.example"),
        get(
            "/jobs",
            "#CrossSiteRequest",
            403,
            Code("cross_site_request"),
        )
        .with_header("sec-fetch-site", "cross-site"),
        get(
            "/jobs",
            "#MisdirectedRequest",
            421,
            Code("misdirected_request"),
        )
        .with_header("host", format!("rebound.example:{}", d.hoist.addr.port())),
        get(
            &format!("/jobs?kind={}", "x".repeat(9000)),
            "#UriTooLong",
            414,
            Code("uri_too_long"),
        ),
    ];
    for endpoint in ["/pulls", "/builds"] {
        for content_type in ["application/x-www-form-urlencoded", "text/plain"] {
            rows.push(
                refused(endpoint, "", 415, "unsupported_media_type")
                    .with_body(content_type, r#"{"image": "alpine", "dest": "a"}"#),
            );
        }
    }
    // Jobs, none yet, and bad queries.
    for query in ["", "?status=queued&kind=pull&limit=5", "?limit=0"] {
        rows.push(get(&format!("/jobs{query}"), "/jobs", 200, Body(json!([]))));
    }
    for query in [
        "?status=done",
        "?kind=push",
        "?limit=-1",
        "?limit=x",
        "?colour=blue",
    ] {
        rows.push(get(
            &format!("/jobs{query}"),
            "/jobs",
            400,
            Code("invalid_query"),
        ));
    }
    for query in ["?wait=-1", "?wait=soon", "?wait=1&colour=blue"] {
        let path = format!("/jobs/nope{query}");
        rows.push(get(&path, "/jobs/{id}", 400, Code("invalid_query")));
    }
    // Pulls refused before they become jobs.
    for (body, status, code) in [
        ("{not json".to_string(), 400, "invalid_json"),
        (r#"{"image": "alpine", "dest": "a", "dest": "b"}"#.into(), 400, "duplicate_key"),
        (r#"{"image": "alpine", "dest": "a\u0000b"}"#.into(), 400, "invalid_dest"),
        (
            r#"{"image": "alpine", "dest": "a", "platform": "linux/../.."}"#.into(),
            400,
            "invalid_platform",
        ),
        (r#"{"image": "alpine", "dest": "a", "colour": "blue"}"#.into(), 400, "invalid_request"),
        (r#"{"image": "alpine"}"#.into(), 400, "invalid_request"),
        (r#"{"image": "alpine", "dest": "a", "force": "yes"}"#.into(), 400, "invalid_request"),
        (
            r#"{"image": "alpine", "dest": "a", "auth": {"username": "u", "password": "p", "x": 1}}"#
                .into(),
            400,
            "invalid_request",
        ),
        (r#"{"image": "Not A Reference!", "dest": "a"}"#.into(), 400, "invalid_reference"),
        (r#"{"image": "alpine", "dest": "a", "platform": "linux"}"#.into(), 400, "invalid_platform"),
        (r#"{"image": "alpine", "dest": "../a"}"#.into(), 400, "invalid_dest"),
        (r#"{"image": "alpine", "dest": "a/../../b"}"#.into(), 400, "invalid_dest"),
        (r#"{"image": "alpine", "dest": ""}"#.into(), 400, "invalid_dest"),
        (r#"{"image": "alpine", "dest": "a", "layout": "tarball"}"#.into(), 400, "invalid_request"),
        (r#"{"image": "alpine", "dest": "/etc/hoist-test"}"#.into(), 403, "dest_outside_roots"),
        (format!(r#"{{"image": "alpine", "dest": "{roots}"}}"#), 403, "dest_outside_roots"),
        (r#"{"image": "alpine", "dest": "exists"}"#.into(), 409, "dest_exists"),
    ] {
        rows.push(refused("/pulls", body, status, code));
    }
    // Builds refused before they become jobs.
    let target = "127.0.0.1:1/x:y";
    let build = |fields: &str| format!(r#"{{"source": "src", "target": "{target}"{fields}}}"#);
    let source = |source: &str| format!(r#"{{"source": "{source}", "target": "{target}"}}"#);
    for (body, status, code) in [
        ("{not json".to_string(), 400, "invalid_json"),
        (
            build(r#", "config": {"env": [], "env": []}"#),
            400,
            "duplicate_key",
        ),
        (build(r#", "colour": "blue""#), 400, "invalid_request"),
        (r#"{"source": "src"}"#.into(), 400, "invalid_request"),
        (
            build(r#", "config": {"entry": []}"#),
            400,
            "invalid_request",
        ),
        (build(r#", "compression": "lz4""#), 400, "invalid_request"),
        (
            r#"{"source": "src", "target": "Not A Reference"}"#.into(),
            400,
            "invalid_reference",
        ),
        (
            format!(r#"{{"source": "src", "target": "127.0.0.1:1/x@{digest}"}}"#),
            400,
            "invalid_reference",
        ),
        (
            build(r#", "base": "Not A Reference""#),
            400,
            "invalid_reference",
        ),
        (build(r#", "platform": "linux""#), 400, "invalid_platform"),
        (source("../src"), 400, "invalid_source"),
        (source(""), 400, "invalid_source"),
        (source("missing"), 400, "invalid_source"),
        (source("file"), 400, "invalid_source"),
        (
            build(r#", "config": {"env": ["NOEQ"]}"#),
            400,
            "invalid_config",
        ),
        (
            build(r#", "config": {"exposed_ports": ["http"]}"#),
            400,
            "invalid_config",
        ),
        (source("/etc"), 403, "source_outside_roots"),
        (source(&roots), 403, "source_outside_roots"),
    ] {
        rows.push(refused("/builds", body, status, code));
    }
    // Copies refused before they become jobs.
    let copy = |rest: &str| {
        format!(r#"{{"source": "127.0.0.1:1/a/b:1", "target": "127.0.0.1:1/a/c:1"{rest}}}"#)
    };
    for (body, code) in [
        (
            r#"{"source": "127.0.0.1:1/a/b:1", "target": "127.0.0.1:1/a/b:1"}"#.to_string(),
            "same_source_and_target",
        ),
        (copy(r#", "platforms": ["linux"]"#), "invalid_platform"),
        (
            copy(r#", "platforms": ["linux/amd64", "linux/amd64"]"#),
            "invalid_platform",
        ),
        (copy(r#", "platforms": []"#), "invalid_request"),
        (copy(r#", "platforms": "some""#), "invalid_request"),
        (copy(r#", "cache": "maybe""#), "invalid_request"),
        (copy(r#", "colour": "blue""#), "invalid_request"),
        (
            r#"{"source": "Not A Ref", "target": "127.0.0.1:1/a/c:1"}"#.to_string(),
            "invalid_reference",
        ),
        (
            format!(r#"{{"source": "127.0.0.1:1/a/b:1", "target": "127.0.0.1:1/a/c@{digest}"}}"#),
            "invalid_reference",
        ),
    ] {
        rows.push(refused("/copies", body, 400, code));
    }
    for (query, status, code) in [
        ("", 400, "invalid_reference"),
        ("?repository=Not%20A%20Ref", 400, "invalid_reference"),
        ("?repository=127.0.0.1:1/a&n=0", 400, "invalid_request"),
        (
            "?repository=127.0.0.1:1/a&last=a%2Fb",
            400,
            "invalid_request",
        ),
        (
            "?repository=127.0.0.1:1/a&colour=blue",
            400,
            "invalid_query",
        ),
        ("?repository=127.0.0.1:1/a", 502, "registry_unreachable"),
    ] {
        rows.push(get(&format!("/tags{query}"), "/tags", status, Code(code)));
    }
    // Images, without a registry.
    for (endpoint, query, status, code) in [
        ("/digest", "", 400, "invalid_reference"),
        ("/digest", "?image=", 400, "invalid_reference"),
        ("/digest", "?image=alpine&colour=blue", 400, "invalid_query"),
        (
            "/digest",
            "?image=alpine&platform=linux",
            400,
            "invalid_platform",
        ),
        ("/inspect", "", 400, "invalid_reference"),
        (
            "/inspect",
            "?image=Not%20A%20Reference",
            400,
            "invalid_reference",
        ),
        (
            "/digest",
            "?image=127.0.0.1:1/x:y",
            502,
            "registry_unreachable",
        ),
        (
            "/inspect",
            "?image=127.0.0.1:1/x:y",
            502,
            "registry_unreachable",
        ),
    ] {
        rows.push(get(
            &format!("{endpoint}{query}"),
            endpoint,
            status,
            Code(code),
        ));
    }
    // Registry host settings (no HOIST_HOSTS_DIR folder: the origin alone).
    rows.push(get(
        "/registries/registry.example:5000",
        "/registries/{host}",
        200,
        Body(json!({
            "registry": "registry.example:5000",
            "folder": null,
            "hosts_file": null,
            "hosts": [{
                "host": "registry.example:5000",
                "url": "https://registry.example:5000/v2/",
                "origin": true,
                "capabilities": ["pull", "resolve", "push"],
                "ca": [],
                "client": [],
                "skip_verify": false,
                "override_path": false,
            }],
        })),
    ));
    rows.push(get(
        "/registries/not_a_host",
        "/registries/{host}",
        400,
        Code("invalid_host"),
    ));
    // Registry credentials in a header that does not decode: refused before any registry
    // is asked (the registry named here does not exist).
    for (endpoint, value) in [
        ("/digest", "not base64!"),
        ("/inspect", "eyJ1c2VybmFtZSI6MX0"), // {"username":1}
    ] {
        rows.push(
            get(
                &format!("{endpoint}?image=127.0.0.1:1/x:y"),
                endpoint,
                400,
                Code("invalid_registry_auth"),
            )
            .with_header("x-registry-auth", value),
        );
    }
    rows
}
