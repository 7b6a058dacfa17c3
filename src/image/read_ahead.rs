//! Reading the source ahead of the tar stage. The tar stage reads one file after another,
//! and from a cold disk each read waits for it: on the bench's 195 MiB, 10k-entry tree with
//! the page cache dropped, tarring took 3.1 s against 2.2 s warm, with the compressors
//! starved meanwhile. A thread of its own opens the next files the way the tar stage will
//! (beneath the source, no symlink followed, not blocking on a FIFO put there since) and
//! asks the kernel to read them into the page cache (`POSIX_FADV_WILLNEED`), at most
//! [`WINDOW_BYTES`] and [`WINDOW_FILES`] ahead of the tar stage, so the disk serves many
//! reads at once.
//!
//! A hint, nothing more: it reads no byte into hoist, and a file it cannot open or that is
//! not what was listed is left alone; the tar stage opens and checks every file itself.
//! Not for: what goes into the layer (`tar`) or which files there are (`walk`).

use std::num::NonZeroU64;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use rustix::fs::{Advice, FileType, Mode, OFlags, ResolveFlags};

use super::tar::Listed;
use super::walk::{Kind, SourceEntry};

/// Bytes of files the read-ahead may be ahead of the tar stage (and the most it asks for
/// of one file: the kernel's own readahead follows the tar stage through a bigger one).
const WINDOW_BYTES: u64 = 32 << 20;
/// Files the read-ahead may be ahead of the tar stage.
const WINDOW_FILES: usize = 256;

/// Where the tar stage is, shared with the read-ahead thread.
pub(super) struct ReadAhead {
    state: Mutex<State>,
    moved: Condvar,
    /// Files advised so far.
    advised: AtomicUsize,
}

struct State {
    /// The entry the tar stage is at.
    reached: usize,
    /// The tar stage ended (done, failed or cancelled): the thread stops.
    done: bool,
    /// While the thread waits with a full window: the entry the tar stage must reach for
    /// half of it to be free again. Only then is the thread woken (a notify is a syscall
    /// even with no one waiting, and the tar stage passes every entry).
    wake_at: Option<usize>,
}

impl ReadAhead {
    /// Runs `tar` over `listed` while a thread reads its files ahead of it; `tar` tells
    /// where it is with [`ReadAhead::reached`]. Without a thread (none could be started),
    /// `tar` just runs.
    pub(super) fn around<T>(listed: &Listed<'_>, tar: impl FnOnce(&ReadAhead) -> T) -> T {
        let (root, entries) = (listed.root, listed.entries);
        let ahead = ReadAhead {
            state: Mutex::new(State {
                reached: 0,
                done: false,
                wake_at: None,
            }),
            moved: Condvar::new(),
            advised: AtomicUsize::new(0),
        };
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name("hoist-readahead".into())
                .spawn_scoped(scope, || ahead.run(root, entries));
            if let Err(e) = thread {
                tracing::debug!(error = %e, "no read-ahead thread; the source is read as it comes");
            }
            // Told on every way out of `tar`, a panic included: the scope joins the thread.
            let _done = Done(&ahead);
            tar(&ahead)
        })
    }

    /// The tar stage is at entry `index` of the listing.
    pub(super) fn reached(&self, index: usize) {
        let mut st = self.lock();
        st.reached = index;
        if st.wake_at.is_some_and(|at| index >= at) {
            st.wake_at = None;
            drop(st);
            self.moved.notify_one();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self, root: BorrowedFd<'_>, entries: &[SourceEntry]) {
        // Bytes of the files before each entry, to measure the window.
        let mut before = Vec::with_capacity(entries.len() + 1);
        let mut total = 0u64;
        for entry in entries {
            before.push(total);
            if let Kind::File { size, .. } = entry.kind {
                total = total.saturating_add(size);
            }
        }
        before.push(total);
        for (index, entry) in entries.iter().enumerate() {
            let Kind::File { size, id } = entry.kind else {
                continue;
            };
            {
                let mut st = self.lock();
                loop {
                    if st.done {
                        return;
                    }
                    let within = index.saturating_sub(st.reached) <= WINDOW_FILES
                        && before[index] - before[st.reached.min(index)] <= WINDOW_BYTES;
                    if within {
                        break;
                    }
                    // Woken once half the window is free (by files and by bytes).
                    let by_files = index.saturating_sub(WINDOW_FILES / 2);
                    let least = before[index].saturating_sub(WINDOW_BYTES / 2);
                    let by_bytes = before.partition_point(|&b| b < least);
                    st.wake_at = Some(by_files.max(by_bytes).min(index));
                    st = self.moved.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                if st.reached > index {
                    // The tar stage got there first.
                    continue;
                }
            }
            if advise(root, &entry.name, size, id) {
                self.advised.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Tells the read-ahead thread the tar stage ended, when dropped.
struct Done<'a>(&'a ReadAhead);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.lock().done = true;
        self.0.moved.notify_one();
    }
}

/// Asks the kernel to read the start of the listed file `name` (at most [`WINDOW_BYTES`]);
/// nothing when it is empty, cannot be opened or is no longer the listed file. True when
/// advised.
fn advise(root: BorrowedFd<'_>, name: &[u8], size: u64, id: (u64, u64)) -> bool {
    let Some(len) = NonZeroU64::new(size.min(WINDOW_BYTES)) else {
        return false;
    };
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let Ok(fd) = rustix::fs::openat2(root, name, flags, Mode::empty(), resolve) else {
        return false;
    };
    let listed = rustix::fs::fstat(&fd).is_ok_and(|st| {
        FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && (st.st_dev, st.st_ino) == id
    });
    // A hint: its failure changes nothing but speed.
    listed && rustix::fs::fadvise(&fd, 0, Some(len), Advice::WillNeed).is_ok()
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::image::walk;
    use tokio_util::sync::CancellationToken;

    /// Runs `tar` in [`ReadAhead::around`] over the listing of `dir`, on a thread of its
    /// own, and fails when it does not end within 20 s (a read-ahead thread that hangs).
    fn around_listing<T: Send + 'static>(
        dir: &Path,
        before: impl FnOnce() + Send + 'static,
        tar: impl FnOnce(&ReadAhead, usize) -> T + Send + 'static,
    ) -> T {
        let dir = dir.to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let root = walk::open_source(&dir).unwrap();
            let listed = root.try_clone().unwrap();
            let entries = walk::list(listed, &dir, None, &CancellationToken::new()).unwrap();
            before();
            let listed = Listed {
                root: root.as_fd(),
                source: &dir,
                entries: &entries,
            };
            let out = ReadAhead::around(&listed, |ahead| tar(ahead, entries.len()));
            tx.send(out).ok();
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the read-ahead thread ended with the tar stage")
    }

    /// The files advised once `expected` were (or 10 s went by), and 200 ms more passed
    /// for any beyond them.
    fn settled(ahead: &ReadAhead, expected: usize) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ahead.advised.load(Ordering::Relaxed) < expected
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        ahead.advised.load(Ordering::Relaxed)
    }

    #[test]
    fn it_stays_within_its_window_of_the_tar_stage_and_stops_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = 3 * WINDOW_FILES;
        for i in 0..files {
            std::fs::write(dir.path().join(format!("f{i:04}")), b"x").unwrap();
        }
        let (held, moved) = around_listing(
            dir.path(),
            || {},
            move |ahead, n| {
                assert_eq!(n, files);
                // Held at entry 0: the thread waits at the window's edge.
                let held = settled(ahead, WINDOW_FILES + 1);
                ahead.reached(WINDOW_FILES);
                let moved = settled(ahead, 2 * WINDOW_FILES + 1);
                // Done with a third of the files left: the thread stops, and is joined.
                (held, moved)
            },
        );
        assert_eq!(held, WINDOW_FILES + 1, "entries 0..=WINDOW_FILES advised");
        assert_eq!(moved, 2 * WINDOW_FILES + 1, "then the window moved on");
    }

    /// A tar stage that panics ends the read-ahead too: the panic comes out of `around`
    /// instead of the scope waiting for the thread forever.
    #[test]
    fn a_panicking_tar_stage_is_not_left_waiting_for_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..(2 * WINDOW_FILES) {
            std::fs::write(dir.path().join(format!("f{i:04}")), b"x").unwrap();
        }
        let path = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let _tx = tx;
            let root = walk::open_source(&path).unwrap();
            let listed = root.try_clone().unwrap();
            let entries = walk::list(listed, &path, None, &CancellationToken::new()).unwrap();
            let listed = Listed {
                root: root.as_fd(),
                source: &path,
                entries: &entries,
            };
            ReadAhead::around(&listed, |ahead| {
                settled(ahead, WINDOW_FILES + 1);
                panic!("the tar stage failed");
            });
        });
        // The sender goes with the panicking thread; a hang keeps it.
        let outcome = rx.recv_timeout(Duration::from_secs(20));
        assert_eq!(
            outcome,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
            "the panic came out of around"
        );
    }

    /// A file replaced by a FIFO after the listing does not block the read-ahead (opened
    /// without blocking, then not advised); the file after it is.
    #[test]
    fn a_fifo_where_a_file_was_listed_is_skipped_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("a-was-a-file");
        std::fs::write(&fifo, b"content").unwrap();
        std::fs::write(dir.path().join("b-file"), b"content").unwrap();
        let replace = fifo.clone();
        let advised = around_listing(
            dir.path(),
            move || {
                std::fs::remove_file(&replace).unwrap();
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &replace,
                    FileType::Fifo,
                    Mode::from_raw_mode(0o644),
                    0,
                )
                .unwrap();
            },
            |ahead, _| settled(ahead, 1),
        );
        assert_eq!(advised, 1, "the FIFO skipped, the file after it advised");
    }
}
