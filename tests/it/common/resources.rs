//! What the daemon holds, read from `/proc/<pid>`: open descriptors, resident memory and
//! its TCP connections, for the tests that check it gives them back after work.
//!
//! The daemon is found by its executable and its `HOIST_LISTEN` (the harness starts it
//! with a cleared environment, so that pair names one process).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::daemon::Hoist;

/// The pid of `hoist`'s `hoist serve` process.
pub fn daemon_pid(hoist: &Hoist) -> u32 {
    let exe = fs::canonicalize(env!("CARGO_BIN_EXE_hoist")).expect("hoist binary");
    let wanted = format!("HOIST_LISTEN={}", hoist.addr);
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let dir = entry.path();
        if fs::read_link(dir.join("exe")).ok().as_deref() != Some(exe.as_path()) {
            continue;
        }
        let environ = fs::read(dir.join("environ")).unwrap_or_default();
        if environ
            .split(|&b| b == 0)
            .any(|var| var == wanted.as_bytes())
        {
            return pid;
        }
    }
    panic!("no hoist serve process with {wanted}");
}

/// Open descriptors of `pid` (`/proc/<pid>/fd`).
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/<pid>/fd")
        .count()
}

/// What `pid`'s descriptors are (`socket:[…]`, paths), sorted, for failure messages.
pub fn fd_targets(pid: u32) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    fs::read_link(e.path())
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `pid`'s established TCP connections to `port` (any address), from its network
/// namespace's `/proc/<pid>/net/tcp{,6}` and the socket inodes among its descriptors.
pub fn connections_to(pid: u32, port: u16) -> usize {
    let inodes: Vec<String> = fd_targets(pid)
        .into_iter()
        .filter_map(|t| Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned()))
        .collect();
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let text = fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) =
                (fields.get(2), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let remote_port = remote
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            // 01: ESTABLISHED
            if remote_port == Some(port) && *state == "01" && inodes.iter().any(|i| i == inode) {
                n += 1;
            }
        }
    }
    n
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Polls `measure` until it is at most `bound` or `within` passed; returns the last value.
pub async fn settles_to(within: Duration, bound: u64, mut measure: impl FnMut() -> u64) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let now = measure();
        if now <= bound || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes `size` bytes that no compressor shrinks (xorshift, seeded) to `path`.
pub fn write_random_file(path: &Path, size: usize, seed: u64) {
    use std::io::Write as _;
    let mut file = std::io::BufWriter::new(fs::File::create(path).expect("random file"));
    let mut x = seed | 1;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(chunk.len());
        file.write_all(&chunk[..n]).expect("random file");
        left -= n;
    }
    file.flush().expect("random file");
}
