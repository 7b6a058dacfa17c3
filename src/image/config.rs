//! The image config JSON of a built image: the base image's config (if any) with the
//! request's overrides applied the way `docker build` applies instructions, the new layer
//! appended to `rootfs.diff_ids`, and one history entry for it.
//!
//! Output is canonical (object keys sorted at every level, no whitespace), so the same
//! inputs give the same config digest. Not for: reading a pulled image's config for a
//! pull (see `registry`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::ImageError;
use crate::digest::Digest;
use crate::registry::Platform;

/// The `config` part of a build request: what to set in the image's runtime config.
/// Every field is optional; unset means "as the base has it" (or absent without a base).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigOverrides {
    /// Replaces the base's; also clears the base's `Cmd` unless `cmd` is given too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` entries; each replaces the base's entry for the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Merged into the base's labels, replacing equal keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `PORT[/tcp|udp|sctp]` (tcp when not said), added to the base's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<Vec<String>>,
}

impl ConfigOverrides {
    /// Refuses env entries that are not `KEY=VALUE`, ports that are not
    /// `PORT[/PROTOCOL]`, and empty label keys. Call it where the request comes in.
    pub fn validate(&self) -> Result<(), ImageError> {
        let invalid = |field, value: &str, reason: &str| ImageError::InvalidConfig {
            field,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        for entry in self.env.iter().flatten() {
            match entry.split_once('=') {
                Some((key, _)) if !key.is_empty() && !entry.contains('\0') => {}
                _ => return Err(invalid("env", entry, "expected KEY=VALUE")),
            }
        }
        for port in self.exposed_ports.iter().flatten() {
            if normal_port(port).is_none() {
                return Err(invalid(
                    "exposed_ports",
                    port,
                    "expected PORT or PORT/PROTOCOL (tcp, udp or sctp), e.g. 8080/tcp",
                ));
            }
        }
        if self.labels.iter().flatten().any(|(k, _)| k.is_empty()) {
            return Err(invalid("labels", "", "label keys must not be empty"));
        }
        Ok(())
    }
}

/// `8080` → `8080/tcp`, `53/UDP` → `53/udp`; None when not a port.
fn normal_port(port: &str) -> Option<String> {
    let (number, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
    let protocol = protocol.to_ascii_lowercase();
    let number: u16 = number.parse().ok().filter(|n| *n > 0)?;
    matches!(protocol.as_str(), "tcp" | "udp" | "sctp").then(|| format!("{number}/{protocol}"))
}

/// The config document of an image made of `base` (its config JSON, when building on a
/// base) plus one new layer whose uncompressed digest is `new_diff_id`. `created` is an
/// RFC 3339 time; `created_by` says what made the layer (shown by `docker history`).
/// Overrides are expected to have passed [`ConfigOverrides::validate`]; a port that did
/// not is kept as written.
pub fn build_config(
    base: Option<&Value>,
    overrides: &ConfigOverrides,
    platform: &Platform,
    new_diff_id: &Digest,
    created: &str,
    created_by: &str,
) -> Vec<u8> {
    let base = base.and_then(Value::as_object);
    let from_base = |key: &str| base.and_then(|b| b.get(key));

    let mut config = from_base("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    apply_overrides(&mut config, overrides);

    let mut diff_ids = from_base("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    diff_ids.push(json!(new_diff_id));
    let mut history = from_base("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    history.push(json!({ "created": created, "created_by": created_by }));

    let mut doc = Map::new();
    doc.insert("architecture".into(), json!(platform.architecture));
    doc.insert("os".into(), json!(platform.os));
    if let Some(variant) = &platform.variant {
        doc.insert("variant".into(), json!(variant));
    }
    // What the base says of its OS build stays true of the new image on the same OS.
    if from_base("os").and_then(Value::as_str) == Some(platform.os.as_str()) {
        for key in ["os.version", "os.features"] {
            if let Some(v) = from_base(key) {
                doc.insert(key.into(), v.clone());
            }
        }
    }
    doc.insert("config".into(), Value::Object(config));
    doc.insert(
        "rootfs".into(),
        json!({ "type": "layers", "diff_ids": diff_ids }),
    );
    doc.insert("history".into(), Value::Array(history));
    doc.insert("created".into(), json!(created));
    serde_json::to_vec(&canonical(Value::Object(doc))).expect("a JSON value serializes")
}

fn apply_overrides(config: &mut Map<String, Value>, o: &ConfigOverrides) {
    if let Some(entrypoint) = &o.entrypoint {
        config.insert("Entrypoint".into(), json!(entrypoint));
        if o.cmd.is_none() {
            config.remove("Cmd");
        }
    }
    if let Some(cmd) = &o.cmd {
        config.insert("Cmd".into(), json!(cmd));
    }
    if let Some(env) = &o.env {
        let mut merged: Vec<String> = match config.get("Env") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        for entry in env {
            let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
            let same_key = |e: &String| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key;
            match merged.iter_mut().find(|e| same_key(e)) {
                Some(existing) => *existing = entry.clone(),
                None => merged.push(entry.clone()),
            }
        }
        config.insert("Env".into(), json!(merged));
    }
    if let Some(dir) = &o.working_dir {
        config.insert("WorkingDir".into(), json!(dir));
    }
    if let Some(user) = &o.user {
        config.insert("User".into(), json!(user));
    }
    if let Some(labels) = &o.labels {
        let merged = object_entry(config, "Labels");
        for (k, v) in labels {
            merged.insert(k.clone(), json!(v));
        }
    }
    if let Some(ports) = &o.exposed_ports {
        let merged = object_entry(config, "ExposedPorts");
        for port in ports {
            merged.insert(normal_port(port).unwrap_or_else(|| port.clone()), json!({}));
        }
    }
}

/// `config[key]` as an object, replacing a `null` or missing one with `{}`.
fn object_entry<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = config.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

/// The value with every object's keys sorted, whatever map serde_json was built with.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
