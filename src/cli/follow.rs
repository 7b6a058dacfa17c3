//! Following a job through `GET /jobs/{id}/events` until it ends.
//!
//! On a terminal, one bar per layer: bytes while it downloads, a spinner while it is
//! extracted (a full download bar is not the end of a layer). Otherwise plain lines: one
//! per change, and a status line (phase, bytes, rate, the layer at work) at least every
//! [`HEARTBEAT`], so a CI system that kills silent jobs does not kill a long download.
//!
//! When the CLI started the job, SIGINT or SIGTERM cancels it: `DELETE /jobs/{id}`, then
//! the job is followed to its end (`cancelled`, unless it ended first); a second signal
//! stops waiting.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::Incoming;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::output::bytes;
use super::{Api, ClientError, Display};

/// Without a terminal, the longest silence while a job runs.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long one long poll waits, when the event stream is gone.
const POLL_WAIT_SECS: u32 = 5;

/// How a followed job ended.
pub(super) struct Followed {
    /// The job as it ended.
    pub job: Value,
    /// A signal asked for its cancellation.
    pub interrupted: bool,
}

fn is_terminal(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// SIGINT and SIGTERM, when the job is the CLI's to cancel.
struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(this: &mut Option<Signals>) {
        match this {
            Some(s) => {
                tokio::select! {
                    _ = s.int.recv() => {}
                    _ = s.term.recv() => {}
                }
            }
            None => std::future::pending().await,
        }
    }
}

type Poll = Pin<Box<dyn Future<Output = Result<Value, ClientError>> + Send>>;

fn poll(api: &Api, id: &str) -> Poll {
    let api = api.clone();
    let path = format!("/jobs/{id}?wait={POLL_WAIT_SECS}");
    Box::pin(async move { api.call(Method::GET, &path, None).await.map(|(_, j)| j) })
}

/// Follows job `id` to its end. Falls back to long polling when the event stream breaks.
/// With `cancel_on_signal`, a signal cancels the job (see the module doc).
pub(super) async fn follow(
    api: &Api,
    id: &str,
    display: Display,
    cancel_on_signal: bool,
) -> anyhow::Result<Followed> {
    let mut view = View::new(display, id);
    let mut signals = if cancel_on_signal {
        Some(Signals::new()?)
    } else {
        None
    };
    let mut interrupted = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let resp = api
        .send(Method::GET, &format!("/jobs/{id}/events"), None)
        .await?;
    let mut body: Option<Incoming> = resp.status().is_success().then(|| resp.into_body());
    let mut polling: Option<Poll> = None;
    let mut buf = String::new();
    loop {
        if body.is_none() && polling.is_none() {
            polling = Some(poll(api, id));
        }
        tokio::select! {
            _ = Signals::recv(&mut signals) => {
                if interrupted {
                    view.finish();
                    anyhow::bail!("job {id} is still being cancelled; stopped waiting for it");
                }
                interrupted = true;
                view.note(&format!("cancelling job {id} (again to stop waiting)"));
                match api.call(Method::DELETE, &format!("/jobs/{id}"), None).await {
                    // It ended first: its end comes next.
                    Ok(_) | Err(ClientError::Problem { status: 409, .. }) => {}
                    Err(e) => {
                        view.finish();
                        return Err(e.into());
                    }
                }
            }
            _ = tick.tick() => view.tick(),
            frame = async { body.as_mut().expect("guarded").frame().await }, if body.is_some() => {
                let data = match frame {
                    Some(Ok(frame)) => frame.into_data().ok(),
                    // The stream ended early (daemon restarting?): poll until the job ends.
                    _ => {
                        body = None;
                        continue;
                    }
                };
                let Some(data) = data else { continue };
                buf.push_str(&String::from_utf8_lossy(&data));
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
                            if is_terminal(&value) {
                                view.finish();
                                return Ok(Followed { job: value, interrupted });
                            }
                        }
                        _ => {}
                    }
                }
            }
            job = async { polling.as_mut().expect("guarded").await }, if polling.is_some() => {
                polling = None;
                let job = job?;
                if is_terminal(&job) {
                    view.state(&job);
                    view.finish();
                    return Ok(Followed { job, interrupted });
                }
                if let Some(p) = job.get("progress").filter(|p| p.is_object()) {
                    view.progress(p);
                }
            }
        }
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
    id: String,
    bars: Option<Bars>,
    /// Plain lines: the lines of the last change, the last progress, when a line was
    /// last printed, and the bytes done at the last status line (for the rate).
    last_lines: Vec<String>,
    last_progress: Option<Value>,
    last_print: Instant,
    rate_from: (Instant, u64),
}

/// One bar per layer plus a summary line, on a terminal.
struct Bars {
    multi: MultiProgress,
    summary: ProgressBar,
    /// Each layer's bar and the state it shows.
    layers: Vec<(ProgressBar, String)>,
}

fn layer_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>19} {msg:<11} [{bar:30}] {bytes:>10}/{total_bytes:<10}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A layer being applied: how long it has been at it, not a full download bar.
fn extracting_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>19} {msg} {spinner} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
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
            id: id.to_string(),
            bars,
            last_lines: Vec::new(),
            last_progress: None,
            last_print: Instant::now(),
            rate_from: (Instant::now(), 0),
        }
    }

    /// A line about the job, above the bars or on stderr.
    fn note(&mut self, line: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.multi.println(line);
            }
            None => {
                eprintln!("{line}");
                self.last_print = Instant::now();
            }
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
        self.last_progress = Some(p.clone());
        match &mut self.bars {
            Some(bars) => {
                bars.summary
                    .set_message(format!("{phase}, layers {ld}/{lt}"));
                bars.summary.set_position(bd);
                while bars.layers.len() < layers.len() {
                    let bar = bars.multi.add(ProgressBar::new(0));
                    bar.set_style(layer_style());
                    bars.layers.push((bar, String::new()));
                }
                let total = layers.len();
                for (i, ((bar, shown), layer)) in bars.layers.iter_mut().zip(&layers).enumerate() {
                    let digest = layer["digest"].as_str().unwrap_or("");
                    let size = layer["size"].as_u64().unwrap_or(0);
                    let done = layer["bytes_done"].as_u64().unwrap_or(0);
                    // A layer is applied while it downloads: while its bytes still come,
                    // its bar moves with them; once they are all in, a spinner shows the
                    // rest of the extraction instead of a bar stuck full.
                    let state = match layer["state"].as_str().unwrap_or("") {
                        "extracting" if done < size => "extracting (streaming)",
                        state => state,
                    };
                    bar.set_prefix(digest.chars().take(19).collect::<String>());
                    bar.set_length(size);
                    bar.set_position(done);
                    if state != shown {
                        if state == "extracting" {
                            bar.set_style(extracting_style());
                            bar.set_message(format!("extracting layer {}/{total}", i + 1));
                            bar.enable_steady_tick(Duration::from_millis(120));
                        } else {
                            if shown == "extracting" {
                                bar.disable_steady_tick();
                                bar.set_style(layer_style());
                            }
                            bar.set_message(state.trim_end_matches(" (streaming)").to_string());
                        }
                        *shown = state.to_string();
                    }
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
                let mut printed = false;
                for (i, line) in lines.iter().enumerate() {
                    if self.last_lines.get(i) != Some(line) {
                        eprintln!("job {}: {line}", self.id);
                        printed = true;
                    }
                }
                if bt > 0 && printed {
                    eprintln!("job {}: {bd}/{bt} bytes", self.id);
                }
                if printed {
                    self.last_print = Instant::now();
                }
                self.last_lines = lines;
            }
        }
    }

    /// Once a second: without a terminal, a status line when nothing was said for a while.
    fn tick(&mut self) {
        if self.bars.is_some() || self.last_print.elapsed() < HEARTBEAT {
            return;
        }
        let line = self.status_line();
        eprintln!("job {}: {line}", self.id);
        self.last_print = Instant::now();
    }

    /// Phase, layers, bytes, rate since the last status line, and the layer at work.
    fn status_line(&mut self) -> String {
        let Some(p) = &self.last_progress else {
            return "waiting to start".to_string();
        };
        let done = p["bytes_done"].as_u64().unwrap_or(0);
        let (since, before) = self.rate_from;
        let secs = since.elapsed().as_secs_f64().max(0.001);
        let rate = done.saturating_sub(before) as f64 / secs;
        self.rate_from = (Instant::now(), done);
        let mut line = format!(
            "{}, layers {}/{}, {}/{} ({}/s)",
            p["phase"].as_str().unwrap_or(""),
            p["layers_done"].as_u64().unwrap_or(0),
            p["layers_total"].as_u64().unwrap_or(0),
            bytes(done),
            bytes(p["bytes_total"].as_u64().unwrap_or(0)),
            bytes(rate as u64)
        );
        let layers = p["layers"].as_array().cloned().unwrap_or_default();
        let at_work = layers.iter().enumerate().find(|(_, l)| {
            matches!(
                l["state"].as_str(),
                Some("downloading" | "extracting" | "pushing")
            )
        });
        if let Some((i, l)) = at_work {
            line.push_str(&format!(
                ", layer {}/{} {} {} ({}/{})",
                i + 1,
                layers.len(),
                l["digest"].as_str().unwrap_or(""),
                l["state"].as_str().unwrap_or(""),
                bytes(l["bytes_done"].as_u64().unwrap_or(0)),
                bytes(l["size"].as_u64().unwrap_or(0))
            ));
        }
        line
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
        let line = format!("job {}: {line}", self.id);
        self.note(&line);
    }

    fn finish(&mut self) {
        if let Some(bars) = self.bars.take() {
            for (bar, _) in &bars.layers {
                bar.finish();
            }
            bars.summary.finish_and_clear();
        }
    }
}
