//! `openapi.yaml`, parsed, and the checker of answers against it: status, content type,
//! required headers and body (JSON, text, or each event of a stream) validated with the
//! spec's own JSON Schemas (2020-12, formats checked).

use std::collections::BTreeSet;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};

use crate::common::sse;

pub const SPEC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// An answer of the daemon, read to its end.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `openapi.yaml`, parsed, and the operations answers were checked against so far.
pub struct Spec {
    pub doc: Value,
    pub checked: BTreeSet<(String, String)>,
}

impl Spec {
    pub fn load() -> Spec {
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
    pub fn operations(&self) -> BTreeSet<(String, String)> {
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
    pub fn resolve<'a>(&'a self, mut v: &'a Value) -> Result<&'a Value, String> {
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
    pub fn validate(&self, schema: &Value, instance: &Value, what: &str) -> Result<(), String> {
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

    pub fn validator(&self, schema: &Value, what: &str) -> Result<jsonschema::Validator, String> {
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
    pub fn try_check(&mut self, method: &str, template: &str, a: &Answer) -> Result<Value, String> {
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

    pub fn check(&mut self, method: &str, template: &str, a: &Answer) -> Value {
        self.try_check(method, template, a)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Checks an answer against a response of `#/components/responses` (the router's own
    /// answers for unknown paths and methods, which belong to no operation).
    pub fn check_component(&self, name: &str, a: &Answer) -> Value {
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
            let events = sse::parse(&text).map_err(|e| format!("{what}: {e}"))?;
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
