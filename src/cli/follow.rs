//! Following a job through `GET /jobs/{id}/events` until it ends.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Method;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;

use super::{Api, Display};

/// Follows job `id` and returns it as it ended. Falls back to long polling when the event
/// stream breaks.
pub(super) async fn follow(api: &Api, id: &str, display: Display) -> anyhow::Result<Value> {
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
    bars: Option<Bars>,
    last_lines: Vec<String>,
}

/// One bar per layer plus a summary line, on a terminal.
struct Bars {
    multi: MultiProgress,
    summary: ProgressBar,
    layers: Vec<ProgressBar>,
}

fn layer_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>19} {msg:<11} [{bar:30}] {bytes:>10}/{total_bytes:<10}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl View {
    fn new(display: Display, id: &str) -> View {
        let bars = (display == Display::Bars).then(|| {
            let multi = MultiProgress::new();
            let summary = multi.add(ProgressBar::new_spinner());
            summary.set_style(
                ProgressStyle::with_template(
                    "{spinner} job {prefix}: {msg} {binary_bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            summary.set_prefix(id.to_string());
            summary.enable_steady_tick(Duration::from_millis(120));
            Bars {
                multi,
                summary,
                layers: Vec::new(),
            }
        });
        View {
            display,
            id: id.to_string(),
            bars,
            last_lines: Vec::new(),
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
        let layers = p["layers"].as_array().cloned().unwrap_or_default();
        match &mut self.bars {
            Some(bars) => {
                bars.summary
                    .set_message(format!("{phase}, layers {ld}/{lt}"));
                bars.summary.set_position(bd);
                while bars.layers.len() < layers.len() {
                    let bar = bars.multi.add(ProgressBar::new(0));
                    bar.set_style(layer_style());
                    bars.layers.push(bar);
                }
                for (bar, layer) in bars.layers.iter().zip(&layers) {
                    let digest = layer["digest"].as_str().unwrap_or("");
                    bar.set_prefix(digest.chars().take(19).collect::<String>());
                    bar.set_length(layer["size"].as_u64().unwrap_or(0));
                    bar.set_position(layer["bytes_done"].as_u64().unwrap_or(0));
                    bar.set_message(layer["state"].as_str().unwrap_or("").to_string());
                }
            }
            None => {
                // Plain lines: one per layer state change, not per byte.
                let mut lines = vec![format!("{phase}, layers {ld}/{lt}")];
                for layer in &layers {
                    lines.push(format!(
                        "layer {} {} ({} bytes)",
                        layer["digest"].as_str().unwrap_or(""),
                        layer["state"].as_str().unwrap_or(""),
                        layer["size"].as_u64().unwrap_or(0)
                    ));
                }
                for (i, line) in lines.iter().enumerate() {
                    if self.last_lines.get(i) != Some(line) {
                        eprintln!("job {}: {line}", self.id);
                    }
                }
                if bt > 0 && lines != self.last_lines {
                    eprintln!("job {}: {bd}/{bt} bytes", self.id);
                }
                self.last_lines = lines;
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
        match &self.bars {
            Some(bars) => {
                let _ = bars.multi.println(format!("job {}: {line}", self.id));
            }
            None => eprintln!("job {}: {line}", self.id),
        }
        let _ = self.display;
    }

    fn finish(&mut self) {
        if let Some(bars) = self.bars.take() {
            for bar in &bars.layers {
                bar.finish();
            }
            bars.summary.finish_and_clear();
        }
    }
}
