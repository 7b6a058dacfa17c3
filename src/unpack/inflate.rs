//! The decode stage of a layer: its compressed bytes are inflated on a thread of their own
//! and handed to the tar stage in chunks, so that one pull keeps two cores busy (inflate on
//! one, tar parsing and file writes on the other), as `tar -xz` does with its two
//! processes.
//!
//! A third thread hashes the chunks in order as they are made, every byte to the end of the
//! blob (past the archive's end blocks, so a corrupt or cut compressed tail fails the
//! layer): that digest is the layer's diff_id, given by [`Inflated::finish`], and the stream
//! ends for its readers only once it is known. On its own thread the hash takes whichever
//! core has room: the inflate thread's while the tar stage is the slower (small files), the
//! tar stage's while inflate is (big files). It is a reader like the others, so the inflate
//! thread is never more than [`DEPTH`] chunks ahead of it either. Measured (bench image,
//! warm pulls, medians of 11, the three layers): 391, 297 and 187 ms with the hash on the
//! inflate thread, 379, 286 and 179 ms on its own (and 353, 275, 165 ms not hashing at all:
//! both cores are busy, so sha256's CPU time shows wherever it runs).
//!
//! Trees applying the same cached blob at the same time share one inflate ([`shared`]):
//! the chunks go to every reader, and the thread waits for the slowest, so eight pulls of
//! one image inflate each layer once, not eight times. A reader may join while the
//! thread has made fewer than [`JOIN_WINDOW`] chunks (they are kept until then); later, it
//! inflates on its own.
//!
//! Memory is at most [`DEPTH`] chunks ahead of the slowest reader (and the first
//! [`JOIN_WINDOW`] while one may join), plus a chunk held by each reader and a read buffer
//! over the blob, whatever the layer's size; all the inflates of the daemon together hold
//! no more than [`PRIMED`] chunks each and [`BORROWED_MAX`] more. Chunks go round between
//! the stages while the layer lasts, and back to the system when it ends. Dropping every
//! reader is the stop signal: the threads see it before their next chunk and end, the
//! inflate thread dropping the blob (its file descriptor) with it. Not for: knowing what
//! the bytes mean (that is `apply`) or where they come from (any `AsyncRead`).

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, Read};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::SyncIoBridge;
use tokio_util::sync::CancellationToken;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::oci::Compression;

/// Size of one chunk of inflated bytes: the allocator's mmap threshold
/// (`serve::tune_allocator`), so that a chunk is mapped on its own and unmapped when the
/// layer ends. Measured on a 4-layer, 480 MB pull: daemon peak RSS 21.5 MiB with inflate
/// on the tar thread, 32.2 MiB with 8 × 256 KiB chunks, 29.8 MiB with these (same speed).
pub(super) const CHUNK: usize = 1 << 20;
/// Chunks the thread may always be ahead of its slowest reader, and all it makes before a
/// reader took one (a layer inflating before its turn, while the layer below is written).
pub(super) const PRIMED: u64 = 2;
/// Chunks the thread may be ahead once its reader reads, while the process-wide
/// [`BORROWED_MAX`] lasts. The tar stage takes a run of small files slower than inflate
/// makes it and a big file faster: room for a few MiB lets the two even out instead of
/// each waiting in turn. Measured (bench image, warm pulls, 10 interleaved rounds, medians):
/// 2 chunks ahead 0.96 s, these 0.87 s; 8 ahead for every layer, the next one too, 1.02 s
/// against 1.09 s on a fuller file system; 16 and 64 alike (0.99 and 0.98 s, 6 rounds).
pub(super) const DEPTH: u64 = 8;
/// Chunks beyond [`PRIMED`] that every running inflate together may hold: 16 MiB for the
/// whole daemon, so that memory stays flat however many layers inflate at once (each has
/// its `PRIMED` chunks whatever happens).
const BORROWED_MAX: u64 = 16;
/// A reader may join a running inflate of its blob until this many chunks were made.
pub(super) const JOIN_WINDOW: u64 = 4;
/// Read buffer over the compressed blob.
const SOURCE_BUF: usize = 256 * 1024;
/// The hash thread's id among the readers' positions.
const HASHER: u64 = u64::MAX;

/// The inflated bytes of one layer, read as they come from the decode thread.
pub(super) struct Inflated {
    shared: Arc<Shared>,
    id: u64,
    /// The sequence number of the next chunk to read.
    next: u64,
    current: Option<Arc<Vec<u8>>>,
    pos: usize,
    /// The digest of the whole stream, once its end was read.
    digest: Option<Digest>,
}

/// One inflate, between its thread and its readers.
struct Shared {
    /// Fired when the last reader goes (a blob reader waiting for bytes then ends).
    stop: CancellationToken,
    state: Mutex<State>,
    /// The inflate thread waits here for its slowest reader.
    room: Condvar,
    /// The hash thread waits here for the next chunk (or the end of the inflate).
    fresh: Condvar,
}

struct State {
    /// The chunks from sequence number `base` on that a reader may still read.
    chunks: VecDeque<Arc<Vec<u8>>>,
    base: u64,
    /// Chunks made so far.
    made: u64,
    /// How the stream ended: the digest of all of it, or why not (each reader gets its own
    /// `io::Error` of that kind and message).
    end: Option<Result<Digest, (io::ErrorKind, String)>>,
    /// Every chunk was made: the stream ends once the hash thread has hashed them all.
    inflated: bool,
    /// The next chunk of each reader that holds the thread back, by reader id (the hash
    /// thread's too, as [`HASHER`]).
    positions: HashMap<u64, u64>,
    /// Readers alive (finishing ones too, which no longer hold the thread back; not the
    /// hash thread).
    readers: usize,
    /// The id the next reader to join gets.
    next_id: u64,
    /// Whether a reader may still join (it then reads from the first chunk).
    joinable: bool,
    /// Readers waiting for a chunk or the end.
    waiters: Vec<Waker>,
    /// Chunks no one holds any more, for the thread to fill again.
    spare: Vec<Vec<u8>>,
    /// Where chunks beyond [`PRIMED`] come from ([`ALLOWANCE`] but in tests).
    allowance: &'static Allowance,
    /// How many of the chunks ahead of the slowest reader were borrowed from it (given
    /// back as readers catch up, and all of them when the state goes).
    borrowed: u64,
}

/// Running inflates a reader may join, by blob digest and diff_id algorithm.
type Joinable = HashMap<(Digest, Algorithm), Weak<Shared>>;
static JOINABLE: LazyLock<Mutex<Joinable>> = LazyLock::new(Default::default);

/// Chunks that inflates may hold beyond [`PRIMED`], shared by all of them.
struct Allowance {
    /// Chunks borrowed now.
    lent: AtomicU64,
    max: u64,
}

impl Allowance {
    const fn new(max: u64) -> Allowance {
        Allowance {
            lent: AtomicU64::new(0),
            max,
        }
    }

    /// Takes one chunk, if any is left.
    fn borrow(&self) -> bool {
        self.lent
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn repay(&self, chunks: u64) {
        self.lent.fetch_sub(chunks, Ordering::AcqRel);
    }
}

/// The daemon's allowance: [`BORROWED_MAX`] chunks.
static ALLOWANCE: Allowance = Allowance::new(BORROWED_MAX);

/// Inflates started, and readers that joined one instead (`/metrics`).
static STARTED: AtomicU64 = AtomicU64::new(0);
static JOINED: AtomicU64 = AtomicU64::new(0);

/// Layer inflates started so far, and readers that joined a running one instead.
pub fn counts() -> (u64, u64) {
    (
        STARTED.load(Ordering::Relaxed),
        JOINED.load(Ordering::Relaxed),
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts inflating `blob` on the blocking pool, hashing the inflated stream with
/// `algorithm`. `declared` is the media type's claim; the blob's first bytes decide (see
/// [`Compression::sniff`]). Call inside a tokio runtime. Errors (a corrupt stream, a
/// failed read of the blob) come out of the reader as `io::Error`s, where the tar stage
/// meets them.
pub(super) fn inflate<R>(blob: R, declared: Compression, algorithm: Algorithm) -> Inflated
where
    R: AsyncRead + Unpin + Send + 'static,
{
    start(blob, declared, algorithm, None, CancellationToken::new())
}

/// Like [`inflate`], for the blob `digest` read from the shared cache (its bytes are the
/// digest's, or the stream fails for every reader): joins a running inflate of it when one
/// is young enough, else starts one that others may join, reading `open(stop)`. `stop`
/// fires once every reader is gone (not when the reader that started it goes: the blob is
/// read for all of them).
pub(super) fn shared<R>(
    digest: &Digest,
    open: impl FnOnce(CancellationToken) -> R,
    declared: Compression,
    algorithm: Algorithm,
) -> Inflated
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let key = (digest.clone(), algorithm);
    let mut joinable = lock(&JOINABLE);
    if let Some(running) = joinable.get(&key).and_then(Weak::upgrade)
        && let Some(reader) = Inflated::join(&running)
    {
        return reader;
    }
    let stop = CancellationToken::new();
    let blob = open(stop.clone());
    let reader = start(blob, declared, algorithm, Some(key.clone()), stop);
    joinable.insert(key, Arc::downgrade(&reader.shared));
    reader
}

fn start<R>(
    blob: R,
    declared: Compression,
    algorithm: Algorithm,
    key: Option<(Digest, Algorithm)>,
    stop: CancellationToken,
) -> Inflated
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let shared = Arc::new(Shared {
        stop,
        state: Mutex::new(State::new(key.is_some(), &ALLOWANCE)),
        room: Condvar::new(),
        fresh: Condvar::new(),
    });
    STARTED.fetch_add(1, Ordering::Relaxed);
    let source = SyncIoBridge::new(blob);
    let thread = shared.clone();
    tokio::task::spawn_blocking(move || decode(source, declared, &thread, key));
    let thread = shared.clone();
    tokio::task::spawn_blocking(move || hash(algorithm, &thread));
    Inflated::reader(shared, 0)
}

impl Inflated {
    /// Reader `id` of `shared`, from its first chunk (already counted in its state).
    fn reader(shared: Arc<Shared>, id: u64) -> Inflated {
        Inflated {
            shared,
            id,
            next: 0,
            current: None,
            pos: 0,
            digest: None,
        }
    }

    /// This reader holds the thread back no more: its position goes, and so does its
    /// chunk (then the thread may go on: notify `room`).
    fn release(&mut self, st: &mut State) {
        st.positions.remove(&self.id);
        if let Some(chunk) = self.current.take() {
            st.recycle(chunk);
        }
        st.trim();
    }

    /// A new reader of `shared` from its first chunk, if it is still joinable.
    fn join(shared: &Arc<Shared>) -> Option<Inflated> {
        let mut st = lock(&shared.state);
        if !st.joinable {
            return None;
        }
        let id = st.next_id;
        st.next_id += 1;
        st.readers += 1;
        st.positions.insert(id, 0);
        JOINED.fetch_add(1, Ordering::Relaxed);
        Some(Inflated::reader(shared.clone(), id))
    }

    /// Reads the rest of the stream (thrown away) and returns the digest of all of it;
    /// `None` when `cancel` fired first.
    pub(super) async fn finish(mut self, cancel: &CancellationToken) -> io::Result<Option<Digest>> {
        if let Some(digest) = self.digest.take() {
            return Ok(Some(digest));
        }
        // What is left is not read.
        let shared = self.shared.clone();
        self.release(&mut lock(&shared.state));
        shared.room.notify_all();
        let end = std::future::poll_fn(|cx| {
            let mut st = lock(&self.shared.state);
            match &st.end {
                Some(end) => Poll::Ready(end.clone()),
                None => {
                    st.waiters.push(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        tokio::select! {
            end = end => end.map(Some).map_err(|(kind, message)| io::Error::new(kind, message)),
            () = cancel.cancelled() => Ok(None),
        }
    }
}

impl State {
    /// Nothing made yet, and one reader (id 0) and the hash thread at the start.
    fn new(joinable: bool, allowance: &'static Allowance) -> State {
        State {
            chunks: VecDeque::new(),
            base: 0,
            made: 0,
            end: None,
            inflated: false,
            positions: HashMap::from([(0, 0), (HASHER, 0)]),
            readers: 1,
            next_id: 1,
            joinable,
            waiters: Vec::new(),
            spare: Vec::new(),
            allowance,
            borrowed: 0,
        }
    }

    /// The next chunk of the slowest reader that holds the thread back.
    fn slowest(&self) -> u64 {
        self.positions.values().min().copied().unwrap_or(self.made)
    }

    /// Whether the thread may make another chunk now: fewer than [`PRIMED`] ahead of the
    /// slowest reader, or fewer than [`DEPTH`] once the readers read, no other may join,
    /// and one more chunk of the process-wide allowance could be borrowed. (Running ahead
    /// while joinable would close the window as soon as the first reader starts, before
    /// the trees submitted with it reach the same layer.)
    fn may_make(&mut self) -> bool {
        let slowest = self.slowest();
        let ahead = self.made - slowest;
        if ahead < PRIMED {
            return true;
        }
        if slowest > 0 && !self.joinable && ahead < DEPTH && self.allowance.borrow() {
            self.borrowed += 1;
            return true;
        }
        false
    }

    /// Gives back what was borrowed for chunks the slowest reader is now past.
    fn repay(&mut self) {
        let ahead = self.made - self.slowest();
        let owed = ahead.saturating_sub(PRIMED).min(self.borrowed);
        if owed < self.borrowed {
            self.allowance.repay(self.borrowed - owed);
            self.borrowed = owed;
        }
    }

    /// Drops the chunks every reader is past (unless one may still join), and repays what
    /// they borrowed.
    fn trim(&mut self) {
        self.repay();
        if self.joinable {
            return;
        }
        let slowest = self.slowest();
        while self.base < slowest {
            let Some(chunk) = self.chunks.pop_front() else {
                break;
            };
            self.base += 1;
            self.recycle(chunk);
        }
    }

    /// Keeps `chunk` for filling again when no one else holds it (a few, no more).
    fn recycle(&mut self, chunk: Arc<Vec<u8>>) {
        if let Ok(bytes) = Arc::try_unwrap(chunk)
            && self.spare.len() < DEPTH as usize + 2
        {
            self.spare.push(bytes);
        }
    }

    fn wake(&mut self) {
        for waker in self.waiters.drain(..) {
            waker.wake();
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        self.allowance.repay(self.borrowed);
    }
}

impl Drop for Inflated {
    fn drop(&mut self) {
        let shared = self.shared.clone();
        let mut st = lock(&shared.state);
        st.readers -= 1;
        self.release(&mut st);
        let last = st.readers == 0;
        drop(st);
        shared.room.notify_all();
        if last {
            shared.fresh.notify_all();
            shared.stop.cancel();
        }
    }
}

/// The decode thread: reads, inflates and hands out full chunks (the last one may be
/// short) until the end of the blob, an error, or no reader left.
fn decode(
    source: impl Read,
    declared: Compression,
    shared: &Shared,
    key: Option<(Digest, Algorithm)>,
) {
    let end = inflate_all(source, declared, shared, key.as_ref());
    let mut st = lock(&shared.state);
    st.joinable = false;
    match end {
        Some(Ok(())) => st.inflated = true,
        Some(Err(e)) => st.end = Some(Err((e.kind(), e.to_string()))),
        None => {}
    }
    st.trim();
    st.wake();
    drop(st);
    shared.fresh.notify_all();
    if let Some(key) = key {
        forget(&key, shared);
    }
}

/// The hash thread: hashes the chunks in order as they are made and, once the last one is
/// hashed, ends the stream with the digest of all of them. Stops at an inflate error or
/// when no reader is left.
fn hash(algorithm: Algorithm, shared: &Shared) {
    let mut hasher = Hasher::new(algorithm);
    let mut next = 0;
    let mut held: Option<Arc<Vec<u8>>> = None;
    let mut st = 'hashing: loop {
        let chunk = {
            let mut st = lock(&shared.state);
            if let Some(spent) = held.take() {
                st.recycle(spent);
            }
            while next >= st.made {
                if st.inflated || st.end.is_some() || st.readers == 0 {
                    break 'hashing st;
                }
                st = shared.fresh.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            let chunk = st.chunks[(next - st.base) as usize].clone();
            next += 1;
            st.positions.insert(HASHER, next);
            st.trim();
            chunk
        };
        shared.room.notify_all();
        hasher.update(&chunk);
        held = Some(chunk);
    };
    // Every chunk made is hashed: the end of the stream, unless it failed or no one reads.
    if st.inflated && st.end.is_none() && st.readers > 0 {
        st.end = Some(Ok(hasher.finish()));
        st.wake();
    }
    st.positions.remove(&HASHER);
    st.trim();
    drop(st);
    shared.room.notify_all();
}

/// Takes `shared` out of the joinable inflates (if it is still the one listed for `key`).
fn forget(key: &(Digest, Algorithm), shared: &Shared) {
    let mut joinable = lock(&JOINABLE);
    if joinable
        .get(key)
        .is_some_and(|w| std::ptr::eq(w.as_ptr(), shared))
    {
        joinable.remove(key);
    }
}

/// Inflates the whole blob into `shared`'s chunks: `Ok` once every chunk was made, an
/// error, or `None` once no reader is left.
fn inflate_all(
    source: impl Read,
    declared: Compression,
    shared: &Shared,
    key: Option<&(Digest, Algorithm)>,
) -> Option<io::Result<()>> {
    let mut reader = io::BufReader::with_capacity(SOURCE_BUF, source);
    let compression = match reader.fill_buf() {
        Ok(head) => Compression::sniff(head),
        Err(e) => return Some(Err(e)),
    };
    if compression != declared {
        tracing::warn!(
            ?declared,
            actual = ?compression,
            "layer compression differs from its media type; using what its bytes say"
        );
    }
    let mut decoded: Box<dyn Read> = match compression {
        Compression::None => Box::new(reader),
        // A layer may hold several gzip members (pigz, appended layers): read them all.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        // The zstd decoder reads every frame until the end of its input.
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(reader) {
            Ok(d) => Box::new(d),
            Err(e) => return Some(Err(e)),
        },
    };
    loop {
        let mut chunk = {
            let mut st = lock(&shared.state);
            loop {
                if st.readers == 0 {
                    // Every reader is gone: the layer was cancelled, failed or finished early.
                    return None;
                }
                if st.may_make() {
                    break;
                }
                st = shared.room.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.spare.pop().unwrap_or_else(|| vec![0; CHUNK])
        };
        chunk.resize(CHUNK, 0);
        let filled = match fill(&mut decoded, &mut chunk) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        if filled == 0 {
            return Some(Ok(()));
        }
        chunk.truncate(filled);
        let mut st = lock(&shared.state);
        st.chunks.push_back(Arc::new(chunk));
        st.made += 1;
        let closing = st.joinable && st.made >= JOIN_WINDOW;
        if closing {
            st.joinable = false;
            st.trim();
        }
        st.wake();
        drop(st);
        shared.fresh.notify_one();
        if closing && let Some(key) = key {
            forget(key, shared);
        }
    }
}

/// Reads into `buf` until it is full or the input ends; returns the bytes read.
fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl AsyncRead for Inflated {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(chunk) = &this.current
                && this.pos < chunk.len()
            {
                let n = buf.remaining().min(chunk.len() - this.pos);
                buf.put_slice(&chunk[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.digest.is_some() {
                return Poll::Ready(Ok(()));
            }
            let mut st = lock(&this.shared.state);
            if this.next < st.made {
                let next = st.chunks[(this.next - st.base) as usize].clone();
                this.next += 1;
                st.positions.insert(this.id, this.next);
                if let Some(spent) = this.current.replace(next) {
                    st.recycle(spent);
                }
                this.pos = 0;
                st.trim();
                drop(st);
                this.shared.room.notify_all();
                continue;
            }
            match &st.end {
                Some(Ok(digest)) => {
                    this.digest = Some(digest.clone());
                    return Poll::Ready(Ok(()));
                }
                Some(Err((kind, message))) => {
                    return Poll::Ready(Err(io::Error::new(*kind, message.clone())));
                }
                None => {
                    st.waiters.push(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::unpack::test_tar::{Watched, gzip, noise};
    use tokio_util::sync::CancellationToken;

    async fn read_all(blob: Vec<u8>, declared: Compression) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        inflate(io::Cursor::new(blob), declared, Algorithm::Sha256)
            .read_to_end(&mut out)
            .await?;
        Ok(out)
    }

    #[tokio::test]
    async fn every_gzip_member_is_inflated_across_chunk_boundaries() {
        let raw = noise(3 * CHUNK + 123);
        // Members end in the middle of a chunk, and one is empty.
        let cuts = [0, 1000, CHUNK + 7, CHUNK + 7, 2 * CHUNK + 5000, raw.len()];
        let members: Vec<u8> = cuts
            .windows(2)
            .flat_map(|w| gzip(&raw[w[0]..w[1]]))
            .collect();
        assert_eq!(read_all(members, Compression::Gzip).await.unwrap(), raw);
    }

    #[tokio::test]
    async fn zstd_frames_and_plain_bytes_come_out_whole() {
        let raw = noise(2 * CHUNK + 99);
        let frames = [
            zstd::encode_all(&raw[..CHUNK], 1).unwrap(),
            zstd::encode_all(&raw[CHUNK..], 1).unwrap(),
        ]
        .concat();
        assert_eq!(read_all(frames, Compression::Zstd).await.unwrap(), raw);
        assert_eq!(read_all(raw.clone(), Compression::Gzip).await.unwrap(), raw);
    }

    #[tokio::test]
    async fn a_corrupt_or_truncated_gzip_tail_is_an_error() {
        let raw = noise(CHUNK + 10);
        let good = gzip(&raw);
        // The CRC of the last member is wrong.
        let mut bad_crc = good.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 0xff;
        // The trailer is cut off.
        let cut = good[..good.len() - 4].to_vec();
        // Garbage after the last member is not a member.
        let trailing = [good.clone(), b"not gzip".to_vec()].concat();
        for (name, blob) in [("crc", bad_crc), ("cut", cut), ("trailing", trailing)] {
            read_all(blob, Compression::Gzip).await.expect_err(name);
        }
    }

    #[test]
    fn dropping_the_reader_mid_layer_ends_its_threads_and_frees_the_blob() {
        // A runtime of its own, shut down without waiting for its blocking threads: one
        // that never ends fails the test instead of hanging it.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let outcome = runtime.block_on(async {
            // Plain bytes (what they are decides, not the claim): no compression to wait for.
            let blob = noise(4 * DEPTH as usize * CHUNK);
            let len = blob.len() as u64;
            let watched = Watched::new(blob);
            let (read, dropped) = (watched.read.clone(), watched.dropped.clone());
            let mut reader = inflate(watched, Compression::Gzip, Algorithm::Sha256);
            let mut first = vec![0; CHUNK];
            reader.read_exact(&mut first).await.unwrap();
            // The thread runs ahead by its depth, no more (a chunk it fills, and its buffer).
            tokio::time::sleep(Duration::from_millis(200)).await;
            let ahead = read.get();
            let most = (DEPTH + 2) * CHUNK as u64 + SOURCE_BUF as u64;
            if ahead > most || dropped.get() {
                return Err(format!(
                    "read {ahead} of {len} bytes, dropped {}",
                    dropped.get()
                ));
            }

            let threads = Arc::downgrade(&reader.shared);
            drop(reader);
            if !dropped.wait().await {
                return Err("the decode thread still holds the blob".to_string());
            }
            if read.get() >= len {
                return Err("the whole blob was read".to_string());
            }
            // The inflate and hash threads both end (they hold the state while they run).
            for _ in 0..100 {
                if threads.strong_count() == 0 {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err("a thread of the layer's inflate is still running".to_string())
        });
        runtime.shutdown_timeout(Duration::from_millis(100));
        outcome.unwrap();
    }

    #[test]
    fn chunks_ahead_are_primed_then_borrowed_from_one_allowance_and_given_back() {
        let spare = 3;
        let allowance: &'static Allowance =
            Box::leak(Box::new(Allowance::new(DEPTH - PRIMED + spare)));
        let lent = || allowance.lent.load(Ordering::Acquire);
        let fill = |st: &mut State| {
            while st.may_make() {
                st.made += 1;
            }
        };
        let read_up_to = |st: &mut State, next: u64| {
            st.positions.insert(0, next);
            st.positions.insert(HASHER, next);
            st.trim();
        };
        let (mut a, mut b) = (State::new(false, allowance), State::new(false, allowance));
        fill(&mut a);
        fill(&mut b);
        assert_eq!((a.made, b.made), (PRIMED, PRIMED), "no reader read yet");
        assert_eq!(lent(), 0);
        // While others may still join, a read inflate stays primed: running ahead would
        // close the window early.
        let mut joinable = State::new(true, allowance);
        fill(&mut joinable);
        read_up_to(&mut joinable, 1);
        fill(&mut joinable);
        assert_eq!((joinable.made, lent()), (1 + PRIMED, 0));

        read_up_to(&mut a, 1);
        fill(&mut a);
        assert_eq!(a.made, 1 + DEPTH, "a reader reads: its depth ahead");
        read_up_to(&mut b, 1);
        fill(&mut b);
        assert_eq!(b.made, 1 + PRIMED + spare, "what the allowance had left");
        assert_eq!(lent(), allowance.max);

        // A's reader catches up by two chunks: they are given back, and B takes them.
        read_up_to(&mut a, 3);
        assert_eq!(lent(), allowance.max - 2);
        fill(&mut b);
        assert_eq!(b.made, 1 + PRIMED + spare + 2);
        // Gone, a state gives back all it held.
        drop(a);
        drop(b);
        assert_eq!(lent(), 0);
    }

    fn digest_of(bytes: &[u8]) -> Digest {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(bytes);
        h.finish()
    }

    #[tokio::test]
    async fn readers_of_one_cached_blob_at_once_share_its_inflate() {
        let raw = noise(6 * CHUNK + 5);
        let blob = gzip(&raw);
        let key = digest_of(&blob);
        let first = Watched::new(blob.clone());
        let second = Watched::new(blob.clone());
        let (first_read, second_read) = (first.read.clone(), second.read.clone());
        let mut a = shared(&key, |_| first, Compression::Gzip, Algorithm::Sha256);
        let mut b = shared(&key, |_| second, Compression::Gzip, Algorithm::Sha256);
        let cancel = CancellationToken::new();
        let (out_a, out_b) = tokio::join!(
            async {
                let mut out = Vec::new();
                a.read_to_end(&mut out).await.unwrap();
                (out, a.finish(&cancel).await.unwrap().unwrap())
            },
            async {
                let mut out = Vec::new();
                b.read_to_end(&mut out).await.unwrap();
                (out, b.finish(&cancel).await.unwrap().unwrap())
            }
        );
        assert!(
            out_a.0 == raw && out_b.0 == raw,
            "both read the whole stream"
        );
        assert_eq!(out_a.1, digest_of(&raw));
        assert_eq!(out_b.1, out_a.1);
        assert_eq!(
            first_read.get(),
            blob.len() as u64,
            "one inflate read the blob"
        );
        assert_eq!(second_read.get(), 0, "the second blob was never read");
    }

    #[tokio::test]
    async fn a_reader_late_for_the_window_inflates_on_its_own_and_one_gone_stops_no_other() {
        let raw = noise(8 * CHUNK);
        let blob = gzip(&raw);
        let key = digest_of(&blob);
        let mut a = shared(
            &key,
            |_| io::Cursor::new(blob.clone()),
            Compression::Gzip,
            Algorithm::Sha256,
        );
        // Past the window: the first reader is beyond its chunks.
        let mut head = vec![0; (JOIN_WINDOW as usize + 1) * CHUNK];
        a.read_exact(&mut head).await.unwrap();
        let late = Watched::new(blob.clone());
        let late_read = late.read.clone();
        let mut b = shared(&key, |_| late, Compression::Gzip, Algorithm::Sha256);
        let mut first = vec![0; CHUNK];
        b.read_exact(&mut first).await.unwrap();
        assert_eq!(
            first,
            raw[..CHUNK],
            "the late reader starts at the beginning"
        );
        assert!(late_read.get() > 0, "the late reader inflates its own blob");
        // A third reader joins the late one's inflate, then goes: the late one goes on.
        let mut c = shared(
            &key,
            |_| io::Cursor::new(Vec::new()),
            Compression::Gzip,
            Algorithm::Sha256,
        );
        c.read_exact(&mut first).await.unwrap();
        assert_eq!(first, raw[..CHUNK]);
        drop(c);
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, raw[CHUNK..]);
        let mut rest = Vec::new();
        a.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, raw[head.len()..]);
    }

    #[tokio::test]
    async fn the_reader_that_started_an_inflate_may_go_and_the_others_read_on() {
        let raw = noise(5 * CHUNK + 17);
        let blob = gzip(&raw);
        let key = digest_of(&blob);
        let stop = std::sync::Arc::new(std::sync::Mutex::new(None));
        let kept = stop.clone();
        let mut a = shared(
            &key,
            move |token: CancellationToken| {
                *kept.lock().unwrap() = Some(token);
                io::Cursor::new(blob)
            },
            Compression::Gzip,
            Algorithm::Sha256,
        );
        let mut b = shared(
            &key,
            |_| io::Cursor::new(Vec::new()),
            Compression::Gzip,
            Algorithm::Sha256,
        );
        let mut first = vec![0; CHUNK];
        a.read_exact(&mut first).await.unwrap();
        drop(a);
        let token = stop.lock().unwrap().clone().unwrap();
        assert!(
            !token.is_cancelled(),
            "a reader is left: the blob is still read"
        );
        let mut all = Vec::new();
        b.read_to_end(&mut all).await.unwrap();
        assert!(all == raw, "the joined reader gets the whole stream");
        drop(b);
        assert!(
            token.is_cancelled(),
            "no reader left: the blob's reader is told to stop"
        );
    }
}
