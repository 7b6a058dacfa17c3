//! The daemon's answers match `openapi.yaml`, and `openapi.yaml` documents exactly the
//! endpoints the router serves.
//!
//! Starts the real `hoist serve` with no registry at all: it exercises every answer that
//! needs none, plus pulls and look-ups of images on a closed loopback port (they fail) and
//! on a silent one (they hang until the test lets them fail). Each answer's status, content
//! type, required headers and body are checked against the operation in the spec, with the
//! spec's own JSON Schemas. Self-contained on purpose: no `tests/common`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};

const SPEC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
const ROUTER_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/mod.rs");
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

// ---------------------------------------------------------------------------------------
// The spec, and checking answers against it

/// An answer of the daemon, read to its end.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `openapi.yaml`, parsed, and the operations answers were checked against so far.
struct Spec {
    doc: Value,
    checked: BTreeSet<(String, String)>,
}

impl Spec {
    fn load() -> Spec {
        let text = std::fs::read_to_string(SPEC_PATH).expect("reading openapi.yaml");
        let doc: Value = serde_norway::from_str(&text).expect("openapi.yaml is not valid YAML");
        assert_eq!(
            doc["openapi"], "3.1.0",
            "openapi.yaml must be OpenAPI 3.1.0"
        );
        Spec {
            doc,
            checked: BTreeSet::new(),
        }
    }

    /// Every (METHOD, path) the spec documents.
    fn operations(&self) -> BTreeSet<(String, String)> {
        let paths = self.doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                METHODS
                    .iter()
                    .filter(|m| item.get(**m).is_some())
                    .map(|m| (m.to_uppercase(), path.clone()))
            })
            .collect()
    }

    /// Follows local `$ref`s (of responses, headers, examples…) to the object itself.
    fn resolve<'a>(&'a self, mut v: &'a Value) -> Result<&'a Value, String> {
        for _ in 0..16 {
            let Some(r) = v.get("$ref").and_then(Value::as_str) else {
                return Ok(v);
            };
            let pointer = r
                .strip_prefix('#')
                .ok_or_else(|| format!("$ref {r:?} is not local"))?;
            v = self
                .doc
                .pointer(pointer)
                .ok_or_else(|| format!("$ref {r:?} points at nothing"))?;
        }
        Err("$ref chain too long".into())
    }

    /// Validates `instance` against `schema` (a schema of the spec: its `$ref`s point into
    /// `#/components/schemas`), as JSON Schema 2020-12 with formats checked.
    fn validate(&self, schema: &Value, instance: &Value, what: &str) -> Result<(), String> {
        let errors: Vec<String> = self
            .validator(schema, what)?
            .iter_errors(instance)
            .map(|e| format!("{} (at {:?})", e, e.instance_path().to_string()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{what}: does not match openapi.yaml:\n  {}\nvalue: {}",
                errors.join("\n  "),
                serde_json::to_string_pretty(instance).unwrap_or_default()
            ))
        }
    }

    fn validator(&self, schema: &Value, what: &str) -> Result<jsonschema::Validator, String> {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": { "schemas": self.doc["components"]["schemas"] },
            "allOf": [schema],
        });
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("{what}: the spec's schema does not compile: {e}"))
    }

    /// Checks an answer to `METHOD template` against the spec; its body, parsed (JSON, the
    /// events of a stream as `[{event, data}]`, else the text).
    fn try_check(&mut self, method: &str, template: &str, a: &Answer) -> Result<Value, String> {
        self.checked
            .insert((method.to_string(), template.to_string()));
        let pointer = format!(
            "/paths/{}/{}",
            template.replace('~', "~0").replace('/', "~1"),
            method.to_lowercase()
        );
        let op = self
            .doc
            .pointer(&pointer)
            .ok_or_else(|| format!("{method} {template} is not in openapi.yaml"))?;
        let responses = &op["responses"];
        let what = format!("{method} {template} → {}", a.status);
        let Some(response) = responses.get(a.status.to_string()) else {
            return Err(format!(
                "{what}: openapi.yaml does not list this status (it lists {}); body: {}",
                keys(responses),
                a.text()
            ));
        };
        self.check_response(&what, response, a)
    }

    fn check(&mut self, method: &str, template: &str, a: &Answer) -> Value {
        self.try_check(method, template, a)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Checks an answer against a response of `#/components/responses` (the router's own
    /// answers for unknown paths and methods, which belong to no operation).
    fn check_component(&self, name: &str, a: &Answer) -> Value {
        let response = &self.doc["components"]["responses"][name];
        assert!(response.is_object(), "no components.responses.{name}");
        self.check_response(&format!("{name} → {}", a.status), response, a)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn check_response(&self, what: &str, response: &Value, a: &Answer) -> Result<Value, String> {
        let response = self.resolve(response)?;
        if let Some(headers) = response.get("headers").and_then(Value::as_object) {
            for (name, header) in headers {
                let header = self.resolve(header)?;
                match a.header(name) {
                    Some(v) => self.validate(
                        &header["schema"],
                        &Value::String(v.to_string()),
                        &format!("{what}: header {name}"),
                    )?,
                    None if header["required"] == true => {
                        return Err(format!("{what}: the spec requires header {name}"));
                    }
                    None => {}
                }
            }
        }
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return match a.body.is_empty() {
                true => Ok(Value::Null),
                false => Err(format!(
                    "{what}: the spec documents no body, got {}",
                    a.text()
                )),
            };
        };
        let content_type = a
            .header(CONTENT_TYPE.as_str())
            .ok_or_else(|| format!("{what}: no Content-Type"))?;
        let wanted = essence(content_type);
        let media = content
            .iter()
            .find(|(k, _)| essence(k) == wanted)
            .map(|(_, m)| m)
            .ok_or_else(|| {
                format!(
                    "{what}: Content-Type {content_type} is not one the spec lists ({})",
                    keys(&Value::Object(content.clone()))
                )
            })?;
        let schema = media
            .get("schema")
            .ok_or_else(|| format!("{what}: the spec gives no schema for {wanted}"))?;
        if wanted == "application/json" || wanted.ends_with("+json") {
            let body: Value = serde_json::from_slice(&a.body)
                .map_err(|e| format!("{what}: body is not JSON ({e}): {}", a.text()))?;
            self.validate(schema, &body, what)?;
            if wanted == "application/problem+json" && body["status"] != a.status {
                return Err(format!(
                    "{what}: problem status {} ≠ HTTP status",
                    body["status"]
                ));
            }
            return Ok(body);
        }
        let text = String::from_utf8(a.body.clone())
            .map_err(|_| format!("{what}: {wanted} body is not UTF-8"))?;
        if wanted == "text/event-stream" {
            // Open API 3.1: the schema of an event stream describes each event.
            let item = schema;
            let events = parse_sse(&text).map_err(|e| format!("{what}: {e}"))?;
            if events.is_empty() {
                return Err(format!("{what}: the stream carried no event"));
            }
            let mut parsed = Vec::new();
            for (i, (name, data)) in events.into_iter().enumerate() {
                let what = format!("{what}: event {i}");
                // As sent: `data` is text (OpenAPI 3.2's shape for server-sent events)…
                let raw = json!({ "event": name, "data": data });
                self.validate(item, &raw, &what)?;
                // …holding a JSON document of the branch's `contentSchema`.
                let data: Value = serde_json::from_str(&data)
                    .map_err(|e| format!("{what}: data is not JSON ({e}): {data:?}"))?;
                let content = self
                    .content_schema(item, &name)?
                    .ok_or_else(|| format!("{what}: no contentSchema for event {name:?}"))?;
                self.validate(content, &data, &what)?;
                parsed.push(json!({ "event": name, "data": data }));
            }
            return Ok(Value::Array(parsed));
        }
        self.validate(schema, &Value::String(text.clone()), what)?;
        Ok(Value::String(text))
    }
}

impl Spec {
    /// The `contentSchema` of `data` in the branch of an event item schema (a `oneOf` of
    /// `{event: {const}, data: {contentSchema}}`) for events named `name`.
    fn content_schema<'a>(
        &'a self,
        item: &'a Value,
        name: &str,
    ) -> Result<Option<&'a Value>, String> {
        let item = self.resolve(item)?;
        let branches = item["oneOf"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(branches
            .iter()
            .find(|b| b["properties"]["event"]["const"] == name)
            .and_then(|b| b["properties"]["data"].get("contentSchema")))
    }
}

fn keys(v: &Value) -> String {
    v.as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// `text/plain; charset=utf-8` → `text/plain`.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Server-sent events as `(event, data)`, `data` as sent (its lines joined); comments
/// skipped.
fn parse_sse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut events = Vec::new();
    for block in text.replace("\r\n", "\n").split("\n\n") {
        let (mut name, mut data) = (None, Vec::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = Some(v.strip_prefix(' ').unwrap_or(v).to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v));
            } else if !(line.starts_with(':') || line.starts_with("id:") || line.is_empty()) {
                return Err(format!("not an event-stream line: {line:?}"));
            }
        }
        if data.is_empty() && name.is_none() {
            continue; // a keep-alive comment
        }
        events.push((name.unwrap_or_else(|| "message".into()), data.join("\n")));
    }
    Ok(events)
}

/// The (METHOD, path) of every `.route(…)` in the router's source.
fn routed_endpoints() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(ROUTER_PATH).expect("reading src/api/mod.rs");
    let mut routes = BTreeSet::new();
    let mut rest = src.as_str();
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        // The call's arguments, up to its closing parenthesis.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(j, _)| j)
            .expect("unbalanced .route(");
        let call = &rest[..end];
        let path = call
            .split('"')
            .nth(1)
            .expect("a .route( without a path literal");
        for method in METHODS {
            let token = format!("{method}(");
            let mut from = 0;
            while let Some(j) = call[from..].find(&token) {
                let at = from + j;
                let before = call[..at].chars().next_back();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    routes.insert((method.to_uppercase(), path.to_string()));
                }
                from = at + token.len();
            }
        }
    }
    routes
}

// ---------------------------------------------------------------------------------------
// The daemon

/// `hoist serve` on a free loopback port with its own data folder; killed when dropped.
struct Daemon {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the daemon on a free port. The port is found by binding port 0 and letting it
    /// go, so another process can take it meanwhile: the daemon must then prove it is ours
    /// (its cache lies in our folder), else it is started again on another port, afresh.
    async fn start(extra_env: &[(&str, &str)]) -> Daemon {
        let token = extra_env
            .iter()
            .find(|(k, _)| *k == "HOIST_API_TOKEN")
            .map(|(_, v)| v.to_string());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = tempfile::tempdir().expect("tempdir");
            let docker_config = dir.path().join("docker");
            std::fs::create_dir(&docker_config).expect("mkdir docker");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log file");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
            cmd.arg("serve");
            // Nothing of the caller's environment may change what the daemon does.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy().into_owned();
                if key.starts_with("HOIST_")
                    || key.to_ascii_lowercase().ends_with("_proxy")
                    || key.starts_with("LISTEN_")
                {
                    cmd.env_remove(key);
                }
            }
            cmd.env("HOIST_LISTEN", format!("127.0.0.1:{port}"))
                .env("HOIST_DATA_DIR", dir.path().join("data"))
                .env("HOIST_ROOTS", dir.path().join("roots"))
                .env("DOCKER_CONFIG", &docker_config)
                .envs(extra_env.iter().copied())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log);
            let child = cmd.spawn().expect("starting hoist serve");
            let mut daemon = Daemon {
                child,
                base: format!("http://127.0.0.1:{port}"),
                dir,
            };
            match daemon.wait_ready(token.as_deref()).await {
                Ok(()) => return daemon,
                Err(e) if attempt < 3 => {
                    eprintln!("hoist serve on port {port}: {e}; trying another port");
                }
                Err(e) => panic!("hoist serve did not start: {e}\n{}", daemon.log()),
            }
        }
    }

    async fn wait_ready(&mut self, token: Option<&str>) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status})"));
            }
            if let Ok(r) = client().get(self.url("/healthz")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err("not ready after 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut request = client().get(self.url("/cache"));
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let cache: Value = match request.send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(e) => return Err(format!("GET /cache: {e}")),
        };
        let ours = self.data_dir().join("cache");
        match cache["path"].as_str() {
            Some(p) if Path::new(p) == ours && matches!(self.child.try_wait(), Ok(None)) => Ok(()),
            _ => Err(format!("another daemon answers there ({cache})")),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn roots(&self) -> PathBuf {
        self.dir.path().join("roots")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- hoist serve log ---\n{}", self.log());
        }
    }
}

/// A "registry" that accepts connections and never answers, until stopped: jobs pulling
/// from it stay running.
struct SilentRegistry {
    addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl SilentRegistry {
    async fn start() -> SilentRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        SilentRegistry { addr, task }
    }

    /// Closes the port and every connection: what was waiting on it fails.
    fn stop(&self) {
        self.task.abort();
    }
}

fn client() -> Client {
    Client::builder().no_proxy().build().expect("http client")
}

async fn send(request: RequestBuilder) -> Answer {
    let r = request.send().await.expect("request to the daemon");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("reading the answer").to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn post_json(http: &Client, url: String, body: &str) -> RequestBuilder {
    http.post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string())
}

/// Polls `GET /jobs/{id}` (each answer checked) until `ok` holds.
async fn job_until(
    spec: &mut Spec,
    d: &Daemon,
    id: &str,
    ok: impl Fn(&Value) -> bool,
    what: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = send(client().get(d.url(&format!("/jobs/{id}")))).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let job = spec.check("GET", "/jobs/{id}", &a);
        if ok(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job never {what}: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(jobs: &Value) -> Vec<&str> {
    jobs.as_array()
        .expect("a list")
        .iter()
        .map(|j| j["id"].as_str().expect("id"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn spec_documents_exactly_the_routed_endpoints() {
    let routed = routed_endpoints();
    assert!(
        routed.len() >= 10,
        "found only {routed:?} in src/api/mod.rs: has the router's shape changed?"
    );
    let documented = Spec::load().operations();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routed but not in openapi.yaml: {undocumented:?}\nin openapi.yaml but not routed: {unrouted:?}"
    );
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_answers_match_the_spec() {
    let mut spec = Spec::load();
    let http = client();
    // One worker: a job stuck on a silent registry keeps the next one queued.
    let d = Daemon::start(&[("HOIST_WORKERS", "1")]).await;

    // System.
    let a = send(http.get(d.url("/healthz"))).await;
    assert_eq!(a.status, 200);
    assert_eq!(spec.check("GET", "/healthz", &a), json!({"status": "ok"}));
    let a = send(http.get(d.url("/openapi.yaml"))).await;
    assert_eq!(a.status, 200);
    spec.check("GET", "/openapi.yaml", &a);
    assert_eq!(
        a.text(),
        std::fs::read_to_string(SPEC_PATH).unwrap(),
        "GET /openapi.yaml differs from openapi.yaml (rebuild the binary)"
    );
    let a = send(http.get(d.url("/metrics"))).await;
    assert_eq!(a.status, 200);
    let text = spec.check("GET", "/metrics", &a);
    assert!(
        text.as_str()
            .unwrap()
            .contains("# TYPE hoist_cache_bytes gauge"),
        "{text}"
    );

    // Cache.
    let a = send(http.get(d.url("/cache"))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let stats = spec.check("GET", "/cache", &a);
    assert_eq!(stats["blobs"], 0);
    assert_eq!(stats["max_bytes"], Value::Null);
    assert_eq!(
        Path::new(stats["path"].as_str().unwrap()),
        d.data_dir().join("cache")
    );
    let a = send(http.delete(d.url("/cache"))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        spec.check("DELETE", "/cache", &a),
        json!({"removed_blobs": 0, "freed_bytes": 0})
    );

    // Jobs, none yet, and bad queries.
    for query in ["", "?status=queued&kind=pull&limit=5", "?limit=0"] {
        let a = send(http.get(d.url(&format!("/jobs{query}")))).await;
        assert_eq!(a.status, 200, "{query}: {}", a.text());
        assert_eq!(spec.check("GET", "/jobs", &a), json!([]));
    }
    for query in [
        "?status=done",
        "?kind=push",
        "?limit=-1",
        "?limit=x",
        "?colour=blue",
    ] {
        let a = send(http.get(d.url(&format!("/jobs{query}")))).await;
        assert_eq!(a.status, 400, "{query}: {}", a.text());
        assert_eq!(spec.check("GET", "/jobs", &a)["code"], "invalid_query");
    }
    for query in ["", "?wait=0.2"] {
        let a = send(http.get(d.url(&format!("/jobs/nope{query}")))).await;
        assert_eq!(a.status, 404, "{}", a.text());
        assert_eq!(spec.check("GET", "/jobs/{id}", &a)["code"], "job_not_found");
    }
    for query in ["?wait=-1", "?wait=soon", "?wait=1&colour=blue"] {
        let a = send(http.get(d.url(&format!("/jobs/nope{query}")))).await;
        assert_eq!(a.status, 400, "{query}: {}", a.text());
        assert_eq!(spec.check("GET", "/jobs/{id}", &a)["code"], "invalid_query");
    }
    let a = send(http.delete(d.url("/jobs/nope"))).await;
    assert_eq!(a.status, 404, "{}", a.text());
    assert_eq!(
        spec.check("DELETE", "/jobs/{id}", &a)["code"],
        "job_not_found"
    );
    let a = send(http.get(d.url("/jobs/nope/events"))).await;
    assert_eq!(a.status, 404, "{}", a.text());
    assert_eq!(
        spec.check("GET", "/jobs/{id}/events", &a)["code"],
        "job_not_found"
    );

    // Pulls refused before they become jobs.
    std::fs::create_dir_all(d.roots().join("exists")).unwrap();
    let roots = d.roots().display().to_string();
    for (body, status, code) in [
        ("{not json", 400, "invalid_json"),
        (
            r#"{"image": "alpine", "dest": "a", "dest": "b"}"#,
            400,
            "duplicate_key",
        ),
        (
            r#"{"image": "alpine", "dest": "a\u0000b"}"#,
            400,
            "invalid_dest",
        ),
        (
            r#"{"image": "alpine", "dest": "a", "platform": "linux/../.."}"#,
            400,
            "invalid_platform",
        ),
        (
            r#"{"image": "alpine", "dest": "a", "colour": "blue"}"#,
            400,
            "invalid_request",
        ),
        (r#"{"image": "alpine"}"#, 400, "invalid_request"),
        (
            r#"{"image": "alpine", "dest": "a", "force": "yes"}"#,
            400,
            "invalid_request",
        ),
        (
            r#"{"image": "alpine", "dest": "a", "auth": {"username": "u", "password": "p", "x": 1}}"#,
            400,
            "invalid_request",
        ),
        (
            r#"{"image": "Not A Reference!", "dest": "a"}"#,
            400,
            "invalid_reference",
        ),
        (
            r#"{"image": "alpine", "dest": "a", "platform": "linux"}"#,
            400,
            "invalid_platform",
        ),
        (
            r#"{"image": "alpine", "dest": "../a"}"#,
            400,
            "invalid_dest",
        ),
        (
            r#"{"image": "alpine", "dest": "a/../../b"}"#,
            400,
            "invalid_dest",
        ),
        (r#"{"image": "alpine", "dest": ""}"#, 400, "invalid_dest"),
        (
            r#"{"image": "alpine", "dest": "a", "layout": "tarball"}"#,
            400,
            "invalid_request",
        ),
        (
            r#"{"image": "alpine", "dest": "/etc/hoist-test"}"#,
            403,
            "dest_outside_roots",
        ),
        (
            &format!(r#"{{"image": "alpine", "dest": "{roots}"}}"#),
            403,
            "dest_outside_roots",
        ),
        (
            r#"{"image": "alpine", "dest": "exists"}"#,
            409,
            "dest_exists",
        ),
    ] {
        let a = send(post_json(&http, d.url("/pulls"), body)).await;
        assert_eq!(a.status, status, "{body}: {}", a.text());
        assert_eq!(spec.check("POST", "/pulls", &a)["code"], code, "{body}");
    }
    // A body is JSON when it says so or says nothing; a form or text body (which a web
    // page can send across sites) is a 415.
    let a = send(
        http.post(d.url("/pulls"))
            .body(r#"{"image": "alpine", "dest": "../a"}"#),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(spec.check("POST", "/pulls", &a)["code"], "invalid_dest");
    for endpoint in ["/pulls", "/builds"] {
        for content_type in ["application/x-www-form-urlencoded", "text/plain"] {
            let a = send(
                http.post(d.url(endpoint))
                    .header(CONTENT_TYPE, content_type)
                    .body(r#"{"image": "alpine", "dest": "a"}"#),
            )
            .await;
            assert_eq!(a.status, 415, "{endpoint} {content_type}: {}", a.text());
            assert_eq!(
                spec.check("POST", endpoint, &a)["code"],
                "unsupported_media_type"
            );
        }
    }

    // Builds refused before they become jobs.
    std::fs::create_dir_all(d.roots().join("src")).unwrap();
    std::fs::write(d.roots().join("src/hello.txt"), "hello\n").unwrap();
    std::fs::write(d.roots().join("file"), "not a folder\n").unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    for (body, status, code) in [
        ("{not json".to_string(), 400, "invalid_json"),
        (
            r#"{"source": "src", "target": "127.0.0.1:1/x:y", "config": {"env": [], "env": []}}"#
                .into(),
            400,
            "duplicate_key",
        ),
        (
            r#"{"source": "src", "target": "127.0.0.1:1/x:y", "colour": "blue"}"#.into(),
            400,
            "invalid_request",
        ),
        (r#"{"source": "src"}"#.into(), 400, "invalid_request"),
        (
            r#"{"source": "src", "target": "127.0.0.1:1/x:y", "config": {"entry": []}}"#.into(),
            400,
            "invalid_request",
        ),
        (
            r#"{"source": "src", "target": "127.0.0.1:1/x:y", "compression": "lz4"}"#.into(),
            400,
            "invalid_request",
        ),
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
            r#"{"source": "src", "target": "127.0.0.1:1/x:y", "base": "Not A Reference"}"#
                .into(),
            400,
            "invalid_reference",
        ),
        (
            r#"{"source": "src", "target": "127.0.0.1:1/x:y", "platform": "linux"}"#.into(),
            400,
            "invalid_platform",
        ),
        (r#"{"source": "../src", "target": "127.0.0.1:1/x:y"}"#.into(), 400, "invalid_source"),
        (r#"{"source": "", "target": "127.0.0.1:1/x:y"}"#.into(), 400, "invalid_source"),
        (r#"{"source": "missing", "target": "127.0.0.1:1/x:y"}"#.into(), 400, "invalid_source"),
        (r#"{"source": "file", "target": "127.0.0.1:1/x:y"}"#.into(), 400, "invalid_source"),
        (
            r#"{"source": "src", "target": "127.0.0.1:1/x:y", "config": {"env": ["NOEQ"]}}"#
                .into(),
            400,
            "invalid_config",
        ),
        (
            r#"{"source": "src", "target": "127.0.0.1:1/x:y", "config": {"exposed_ports": ["http"]}}"#
                .into(),
            400,
            "invalid_config",
        ),
        (r#"{"source": "/etc", "target": "127.0.0.1:1/x:y"}"#.into(), 403, "source_outside_roots"),
        (
            format!(r#"{{"source": "{roots}", "target": "127.0.0.1:1/x:y"}}"#),
            403,
            "source_outside_roots",
        ),
    ] {
        let a = send(post_json(&http, d.url("/builds"), &body)).await;
        assert_eq!(a.status, status, "{body}: {}", a.text());
        assert_eq!(spec.check("POST", "/builds", &a)["code"], code, "{body}");
    }

    // The router's own answers.
    let a = send(http.get(d.url("/nope"))).await;
    assert_eq!(a.status, 404, "{}", a.text());
    assert_eq!(spec.check_component("NotFound", &a)["code"], "not_found");
    for request in [http.put(d.url("/jobs")), http.post(d.url("/healthz"))] {
        let a = send(request).await;
        assert_eq!(a.status, 405, "{}", a.text());
        assert_eq!(
            spec.check_component("MethodNotAllowed", &a)["code"],
            "method_not_allowed"
        );
    }

    // The answers that come before any endpoint.
    let port = d.base.rsplit(':').next().unwrap().to_string();
    for (name, value, status, component, code) in [
        (
            "origin",
            "http://evil.example".to_string(),
            403,
            "CrossSiteRequest",
            "cross_site_request",
        ),
        (
            "sec-fetch-site",
            "cross-site".to_string(),
            403,
            "CrossSiteRequest",
            "cross_site_request",
        ),
        (
            "host",
            format!("rebound.example:{port}"),
            421,
            "MisdirectedRequest",
            "misdirected_request",
        ),
    ] {
        let a = send(http.get(d.url("/jobs")).header(name, &value)).await;
        assert_eq!(a.status, status, "{name}: {value}: {}", a.text());
        assert_eq!(spec.check_component(component, &a)["code"], code);
    }
    let a = send(http.get(d.url(&format!("/jobs?kind={}", "x".repeat(9000))))).await;
    assert_eq!(a.status, 414, "{}", a.text());
    assert_eq!(
        spec.check_component("UriTooLong", &a)["code"],
        "uri_too_long"
    );

    // Images, without a registry.
    for (endpoint, query, code) in [
        ("/digest", "", "invalid_reference"),
        ("/digest", "?image=", "invalid_reference"),
        ("/digest", "?image=alpine&colour=blue", "invalid_query"),
        (
            "/digest",
            "?image=alpine&platform=linux",
            "invalid_platform",
        ),
        ("/inspect", "", "invalid_reference"),
        (
            "/inspect",
            "?image=Not%20A%20Reference",
            "invalid_reference",
        ),
        (
            "/inspect",
            "?image=alpine&platform=linux/../..",
            "invalid_platform",
        ),
    ] {
        let a = send(http.get(d.url(&format!("{endpoint}{query}")))).await;
        assert_eq!(a.status, 400, "{endpoint}{query}: {}", a.text());
        assert_eq!(
            spec.check("GET", endpoint, &a)["code"],
            code,
            "{endpoint}{query}"
        );
    }
    for endpoint in ["/digest", "/inspect"] {
        let a = send(http.get(d.url(&format!("{endpoint}?image=127.0.0.1:1/x:y")))).await;
        assert_eq!(a.status, 502, "{endpoint}: {}", a.text());
        assert_eq!(
            spec.check("GET", endpoint, &a)["code"],
            "registry_unreachable"
        );
    }

    // Jobs. A: stuck on a silent registry, holding the only worker; B: queued behind it.
    let silent = SilentRegistry::start().await;
    let body = json!({"image": format!("{}/x:y", silent.addr), "dest": "a",
                      "auth": {"username": "u", "password": "secret"}});
    let a = send(post_json(&http, d.url("/pulls"), &body.to_string())).await;
    assert_eq!(a.status, 202, "{}", a.text());
    let job_a = spec.check("POST", "/pulls", &a);
    let id_a = job_a["id"].as_str().unwrap().to_string();
    assert_eq!(a.header("location"), Some(format!("/jobs/{id_a}").as_str()));
    assert_eq!(job_a["status"], "queued");
    assert!(
        job_a["request"].get("auth").is_none(),
        "credentials echoed: {job_a}"
    );
    assert!(
        !a.text().contains("secret"),
        "credentials echoed: {}",
        a.text()
    );
    job_until(
        &mut spec,
        &d,
        &id_a,
        |j| j["status"] == "running",
        "running",
    )
    .await;
    let started = Instant::now();
    let a = send(http.get(d.url(&format!("/jobs/{id_a}?wait=0.3")))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(spec.check("GET", "/jobs/{id}", &a)["status"], "running");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "?wait= did not wait"
    );

    let body = r#"{"image": "127.0.0.1:1/x:y", "dest": "b"}"#;
    let a = send(post_json(&http, d.url("/pulls"), body)).await;
    assert_eq!(a.status, 202, "{}", a.text());
    let id_b = spec.check("POST", "/pulls", &a)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = send(http.get(d.url(&format!("/jobs/{id_b}")))).await;
    assert_eq!(spec.check("GET", "/jobs/{id}", &a)["status"], "queued");
    let a = send(http.delete(d.url(&format!("/jobs/{id_b}")))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let cancelled = spec.check("DELETE", "/jobs/{id}", &a);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["error"]["code"], "cancelled");
    let a = send(http.delete(d.url(&format!("/jobs/{id_b}")))).await;
    assert_eq!(a.status, 409, "{}", a.text());
    assert_eq!(
        spec.check("DELETE", "/jobs/{id}", &a)["code"],
        "job_finished"
    );
    let a = send(http.get(d.url(&format!("/jobs/{id_b}/events")))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let events = spec.check("GET", "/jobs/{id}/events", &a);
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    assert_eq!(events[0]["data"]["status"], "cancelled");

    // C: queued behind A. Follow both from now on; then let the silent registry go away:
    // A fails, C runs (progress: resolving) and fails on a closed port.
    let body = r#"{"image": "127.0.0.1:1/x:y", "dest": "c", "platform": "linux/amd64",
                   "force": true, "cache": "bypass", "layout": "rootfs", "auth": null}"#;
    let a = send(post_json(&http, d.url("/pulls"), body)).await;
    assert_eq!(a.status, 202, "{}", a.text());
    let id_c = spec.check("POST", "/pulls", &a)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let follow = |id: &str| {
        let request = http.get(d.url(&format!("/jobs/{id}/events")));
        async move {
            tokio::time::timeout(Duration::from_secs(60), send(request))
                .await
                .expect("the event stream of an ended job ends")
        }
    };
    let stream_a = tokio::spawn(follow(&id_a));
    let stream_c = tokio::spawn(follow(&id_c));
    tokio::time::sleep(Duration::from_millis(300)).await;
    silent.stop();

    // ?wait= holds the answer until C has ended.
    let a = send(http.get(d.url(&format!("/jobs/{id_c}?wait=30")))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let failed = spec.check("GET", "/jobs/{id}", &a);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "registry_unreachable", "{failed}");
    assert_eq!(failed["request"]["platform"], "linux/amd64");
    let a = send(http.delete(d.url(&format!("/jobs/{id_c}")))).await;
    assert_eq!(a.status, 409, "{}", a.text());
    spec.check("DELETE", "/jobs/{id}", &a);

    let a = stream_a.await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    let events = spec.check("GET", "/jobs/{id}/events", &a);
    let states: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "state")
        .map(|e| e["data"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["running", "failed"], "{events}");
    let a = stream_c.await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    let events = spec.check("GET", "/jobs/{id}/events", &a);
    let names: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e["event"].as_str().unwrap() {
            "state" => e["data"]["status"].as_str().unwrap(),
            other => other,
        })
        .collect();
    assert_eq!(names.first(), Some(&"queued"), "{events}");
    assert!(
        names.contains(&"running") && names.contains(&"progress"),
        "{events}"
    );
    assert_eq!(names.last(), Some(&"failed"), "{events}");

    // D: a build that makes its layer, then fails to push to a closed port. Followed from
    // the start: its progress lists its blobs.
    let body = json!({"source": "src", "target": "127.0.0.1:1/team/app:1.0",
                      "config": {"entrypoint": ["/app"], "env": ["A=1"], "labels": {"k": "v"}},
                      "format": "oci", "compression": "zstd", "source_date_epoch": 1700000000,
                      "auth": {"username": "u", "password": "secret"}, "base_auth": null});
    let a = send(post_json(&http, d.url("/builds"), &body.to_string())).await;
    assert_eq!(a.status, 202, "{}", a.text());
    let job_d = spec.check("POST", "/builds", &a);
    let id_d = job_d["id"].as_str().unwrap().to_string();
    assert_eq!(a.header("location"), Some(format!("/jobs/{id_d}").as_str()));
    assert_eq!(job_d["kind"], "build");
    assert!(
        !a.text().contains("secret"),
        "credentials echoed: {}",
        a.text()
    );
    let stream_d = tokio::spawn(follow(&id_d));
    let a = send(http.get(d.url(&format!("/jobs/{id_d}?wait=30")))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let failed = spec.check("GET", "/jobs/{id}", &a);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "registry_unreachable", "{failed}");
    let a = stream_d.await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    let events = spec.check("GET", "/jobs/{id}/events", &a);
    let progress_layers = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "progress")
        .map(|e| e["data"]["layers"].as_array().map_or(0, Vec::len))
        .max();
    // The new layer and the config.
    assert_eq!(progress_layers, Some(2), "{events}");

    // The list, newest first, and its filters.
    for (query, expected) in [
        ("", vec![&id_d, &id_c, &id_b, &id_a]),
        ("?status=failed", vec![&id_d, &id_c, &id_a]),
        ("?status=cancelled&kind=pull", vec![&id_b]),
        ("?kind=build", vec![&id_d]),
        ("?kind=pull&limit=2", vec![&id_c, &id_b]),
        ("?limit=1", vec![&id_d]),
    ] {
        let a = send(http.get(d.url(&format!("/jobs{query}")))).await;
        assert_eq!(a.status, 200, "{query}: {}", a.text());
        let jobs = spec.check("GET", "/jobs", &a);
        assert_eq!(ids(&jobs), expected, "{query}");
    }
    let a = send(http.get(d.url("/metrics"))).await;
    let text = spec.check("GET", "/metrics", &a);
    for series in [
        "hoist_jobs{kind=\"pull\",status=\"failed\"} 2",
        "hoist_jobs{kind=\"build\",status=\"failed\"} 1",
        "hoist_jobs{kind=\"pull\",status=\"cancelled\"} 1",
    ] {
        assert!(text.as_str().unwrap().contains(series), "{series}: {text}");
    }

    // With HOIST_API_TOKEN: /healthz stays open, the rest needs the token.
    let t = Daemon::start(&[("HOIST_API_TOKEN", "sesame")]).await;
    let a = send(http.get(t.url("/healthz"))).await;
    assert_eq!(a.status, 200);
    spec.check("GET", "/healthz", &a);
    for token in [None, Some("Bearer wrong"), Some("sesame")] {
        let mut request = http.get(t.url("/jobs"));
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, token);
        }
        let a = send(request).await;
        assert_eq!(a.status, 401, "{token:?}: {}", a.text());
        assert_eq!(spec.check("GET", "/jobs", &a)["code"], "unauthorized");
    }
    let a = send(
        http.get(t.url("/jobs"))
            .header(AUTHORIZATION, "Bearer sesame"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    spec.check("GET", "/jobs", &a);

    // Every documented operation was exercised, and nothing undocumented was.
    let documented = spec.operations();
    let unexercised: Vec<_> = documented.difference(&spec.checked).collect();
    let undocumented: Vec<_> = spec.checked.difference(&documented).collect();
    assert!(
        unexercised.is_empty() && undocumented.is_empty(),
        "in openapi.yaml but not exercised here: {unexercised:?}\n\
         exercised but not in openapi.yaml: {undocumented:?}"
    );
}
