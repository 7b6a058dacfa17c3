//! Following a job through `GET /jobs/{id}/events` until it ends.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::{Api, Display};

/// Follows job `id` and returns it as it ended. Falls back to long polling when the event
/// stream breaks.
pub async fn follow(api: &Api, id: &str, display: Display) -> anyhow::Result<Value> {
    let mut view = View::new(display, id);
    let resp = api
        .send(Method::GET, &format!("/jobs/{id}/events"), None)
        .await?;
    if resp.status().is_success() {
        let mut body = resp.into_body();
        let mut buf = String::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            let Some(data) = frame.data_ref() else {
                continue;
            };
            buf.push_str(&String::from_utf8_lossy(data));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (event, data) = parse_event(&block);
                let Ok(value) = serde_json::from_str::<Value>(&data) else {
                    continue;
                };
                match event.as_str() {
                    "progress" => view.progress(&value),
                    "state" => {
                        view.state(&value);
                        if matches!(
                            value["status"].as_str(),
                            Some("succeeded" | "failed" | "cancelled")
                        ) {
                            view.finish();
                            return Ok(value);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    // The stream ended early (daemon restarting?): poll until the job ends.
    loop {
        let (_, job) = api
            .call(Method::GET, &format!("/jobs/{id}?wait=30"), None)
            .await?;
        if matches!(
            job["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            view.state(&job);
            view.finish();
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn parse_event(block: &str) -> (String, String) {
    let mut event = String::from("message");
    let mut data = String::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    (event, data)
}

struct View {
    display: Display,
    id: String,
    bar: Option<ProgressBar>,
    last_line: String,
}

impl View {
    fn new(display: Display, id: &str) -> View {
        let bar = (display == Display::Bars).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix:>11} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        View {
            display,
            id: id.to_string(),
            bar,
            last_line: String::new(),
        }
    }

    fn progress(&mut self, p: &Value) {
        let phase = p["phase"].as_str().unwrap_or("");
        let (ld, lt) = (
            p["layers_done"].as_u64().unwrap_or(0),
            p["layers_total"].as_u64().unwrap_or(0),
        );
        let (bd, bt) = (
            p["bytes_done"].as_u64().unwrap_or(0),
            p["bytes_total"].as_u64().unwrap_or(0),
        );
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(phase.to_string());
                bar.set_length(bt);
                bar.set_position(bd);
                bar.set_message(format!("layers {ld}/{lt}"));
            }
            None => {
                // Plain lines: one per phase or layer change, not per byte.
                let line = format!("{phase} layers {ld}/{lt}");
                if line != self.last_line {
                    eprintln!("job {}: {line} ({bd}/{bt} bytes)", self.id);
                    self.last_line = line;
                }
            }
        }
    }

    fn state(&mut self, job: &Value) {
        let status = job["status"].as_str().unwrap_or("?");
        let line = match &job["error"] {
            Value::Object(e) => format!(
                "{status}: {}: {}",
                e.get("code").and_then(Value::as_str).unwrap_or(""),
                e.get("message").and_then(Value::as_str).unwrap_or("")
            ),
            _ => status.to_string(),
        };
        match &self.bar {
            Some(bar) => bar.println(format!("job {}: {line}", self.id)),
            None => eprintln!("job {}: {line}", self.id),
        }
        let _ = self.display;
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
