//! Server-sent events (`text/event-stream`, as `GET /jobs/{id}/events` sends them), read
//! the way a browser's `EventSource` reads them: blocks split by a blank line, `event:` and
//! `data:` fields (several `data:` lines joined by `\n`), comments (`:`) and `id:` skipped.
//! The harness's one parser: the job tests, the build tests and the OpenAPI check use it.

use serde_json::Value;

/// The events of `text` as (event name, data as sent); an unnamed event is a `message`.
/// Fails on a line that is no event-stream field.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
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

/// The events of `text` with their data parsed as JSON; panics on anything else.
pub fn parse_json(text: &str) -> Vec<(String, Value)> {
    parse(text)
        .unwrap_or_else(|e| panic!("{e}: {text}"))
        .into_iter()
        .map(|(name, data)| {
            let value = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("event {name}: data is not JSON ({e}): {data:?}"));
            (name, value)
        })
        .collect()
}
