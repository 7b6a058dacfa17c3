//! `hoist serve`: lock the data (and cache) folder, open everything, listen
//! (systemd-inherited socket, TCP or Unix), serve until SIGTERM/SIGINT (or idle), then
//! stop cleanly; also the allocator's settings and trimming after jobs.
//!
//! Not for: the routes (`api`), settings (`config`), or what a job does (`jobs`).

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::api::{AllowedHosts, AppState, ProblemListener, router};
use crate::config::{Config, Listen};
use crate::jobs::{JobEnv, JobEvent, Jobs};
use crate::mirror::Mirror;
use crate::registry::{RegistryClient, RegistryConfig};
use crate::store::Store;

/// How long running jobs get to clean up after a stop signal.
const JOB_GRACE: Duration = Duration::from_secs(20);
/// How long open connections (long polls, event streams) get before the daemon exits anyway.
const CONNECTION_GRACE: Duration = Duration::from_secs(5);

/// Quiet time after a job ends before free memory is handed back, so that jobs ending
/// together cause one trim.
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// Allocations at least this large are mapped on their own and unmapped when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Makes the daemon give memory back after big work. Call before any thread starts.
///
/// glibc raises its mmap threshold (up to 32 MiB) each time a mapped block is freed, and
/// its trim threshold to twice that. After the first 16 MiB upload chunk of a push, the
/// next ones come from the per-thread arenas of the tokio workers, and once freed they
/// stay there as free top chunks that nothing trims (`malloc_trim` does not shrink the top
/// of a thread arena): one 200 MB build left the daemon 30 MiB larger with under 1 MiB
/// live (heaptrack). A fixed threshold turns that sliding off, so big buffers are mapped
/// and unmapped every time and RSS returns to where it was.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; called before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Hands the allocator's free pages back to the system (`malloc_trim`): what the fixed
/// threshold leaves, freed buffers smaller than it, scattered in the arenas of the
/// threads that ran a job (2.5 MiB after a mix of 200 MB builds and pulls).
fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the arenas' locks itself; it frees nothing in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims the allocator each time jobs have ended and a moment passed without more ending.
async fn trim_after_jobs(jobs: Jobs) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let mut events = jobs.subscribe();
    loop {
        let ended = match events.recv().await {
            Ok(JobEvent::State(job)) => job.status.is_terminal(),
            Ok(JobEvent::Progress { .. }) => false,
            Err(RecvError::Lagged(_)) => true,
            Err(RecvError::Closed) => return,
        };
        if !ended {
            continue;
        }
        tokio::time::sleep(TRIM_AFTER).await;
        // what happened meanwhile, other jobs ending included, is covered by this trim
        while !matches!(
            events.try_recv(),
            Err(TryRecvError::Empty | TryRecvError::Closed)
        ) {}
        let _ = tokio::task::spawn_blocking(trim_allocator).await;
    }
}

pub use crate::logging::init as init_logging;

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    /// The `Host` names requests may give: a TCP socket's own address (an inherited one's
    /// too) and the configured names; none checked on a Unix socket.
    fn allowed_hosts(&self, config: &Config) -> anyhow::Result<Option<Arc<AllowedHosts>>> {
        Ok(match self {
            Listener::Tcp(l) => Some(Arc::new(AllowedHosts::new(
                &[l.local_addr()?],
                &config.allowed_hosts,
            ))),
            Listener::Unix(_) => None,
        })
    }
}

/// The socket systemd passed (LISTEN_FDS/LISTEN_PID), else `config.listen`.
/// The third value is true when the socket was inherited (and so is not ours to remove).
async fn listen(config: &Config) -> anyhow::Result<(Listener, String, bool)> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() > 0 {
        if let Ok(Some(l)) = fds.take_tcp_listener(0) {
            l.set_nonblocking(true)?;
            let addr = l.local_addr()?.to_string();
            return Ok((
                Listener::Tcp(tokio::net::TcpListener::from_std(l)?),
                format!("systemd socket {addr}"),
                true,
            ));
        }
        if let Ok(Some(l)) = fds.take_unix_listener(0) {
            l.set_nonblocking(true)?;
            return Ok((
                Listener::Unix(tokio::net::UnixListener::from_std(l)?),
                "systemd unix socket".into(),
                true,
            ));
        }
        anyhow::bail!("LISTEN_FDS is set but fd 3 is neither a TCP nor a Unix stream socket");
    }
    match &config.listen {
        Listen::Tcp(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            let local = l.local_addr()?.to_string();
            Ok((Listener::Tcp(l), local, false))
        }
        Listen::Unix(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            // A socket file left by a previous run would make bind fail.
            if std::fs::symlink_metadata(path).is_ok_and(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_socket()
            }) {
                std::fs::remove_file(path)?;
            }
            let l = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("listening on unix:{}", path.display()))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                .with_context(|| format!("chmod 0660 {}", path.display()))?;
            Ok((Listener::Unix(l), format!("unix:{}", path.display()), false))
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    for dir in [&config.data_dir, &config.cache_dir, &config.tmp_dir()] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // One daemon per data and cache folder: two would delete each other's temporary files
    // and run each other's jobs. Held until the process exits.
    let _data_lock = lock_folder(&config.data_dir)?;
    let _cache_lock = match config.cache_dir.starts_with(&config.data_dir) {
        true => None,
        false => Some(lock_folder(&config.cache_dir)?),
    };
    // A crashed daemon may have left job-private blobs behind; `tmp/` is the daemon's
    // alone (under the lock above), so all of it goes. Staging trees beside dests are
    // another matter: they sit among the user's files, so only those that jobs recorded
    // are removed (`Jobs::start`), never whatever merely has their name.
    for entry in std::fs::read_dir(config.tmp_dir())?.flatten() {
        let _ = std::fs::remove_dir_all(entry.path());
    }
    for root in &config.roots {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating root {}", root.display()))?;
    }
    let db = crate::db::open(&config.db_path()).await?;
    let store = Store::open(config.cache_dir.clone(), db.clone(), config.cache_max_bytes).await?;
    let registry_config = RegistryConfig {
        insecure_registries: config.insecure_registries.clone(),
        docker_config_dir: config.docker_config_dir.clone(),
        hosts_dirs: config.hosts_dirs.clone(),
    };
    // The mirror's own client has no Docker config: a /v2/ client reads upstream with its
    // own credentials or none, never with the daemon's. Everything else is the same.
    let mirror_registry = RegistryClient::new(RegistryConfig {
        docker_config_dir: None,
        ..registry_config.clone()
    })?;
    let registry = RegistryClient::new(registry_config)?;
    // Which credentials the daemon falls back on, for an admin wondering why a pull is
    // (not) authorized: under systemd there is no $HOME, so the unit sets DOCKER_CONFIG.
    tracing::info!(
        docker_config = %registry.docker_config(),
        "registry credentials of the daemon's own, when a request brings none"
    );
    let mirror = Mirror::new(
        mirror_registry,
        store.clone(),
        db.clone(),
        config.mirror_default.clone(),
    );
    let jobs = Jobs::start(
        db,
        JobEnv {
            config: config.clone(),
            store,
            registry,
        },
    )
    .await?;

    let (listener, addr, inherited) = listen(&config).await?;
    let last_request = Arc::new(AtomicU64::new(now_secs()));
    let app = router(AppState {
        jobs: jobs.clone(),
        mirror,
        api_token: config.api_token.as_deref().map(Arc::from),
        hosts: listener.allowed_hosts(&config)?,
        last_request: last_request.clone(),
    });

    let stop = CancellationToken::new();
    tokio::spawn(watch_signals(stop.clone()));
    tokio::spawn(trim_after_jobs(jobs.clone()));
    if let Some(idle) = config.idle_exit {
        tokio::spawn(watch_idle(jobs.clone(), last_request, idle, stop.clone()));
    }

    tracing::info!(
        listen = %addr,
        data_dir = %config.data_dir.display(),
        roots = ?config.roots,
        workers = config.workers,
        "hoist ready"
    );
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let shutdown = stop.clone().cancelled_owned();
    let server = async {
        match listener {
            Listener::Tcp(l) => {
                axum::serve(ProblemListener(l), app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            Listener::Unix(l) => {
                axum::serve(ProblemListener(l), app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        }
    };
    let stopping = async {
        stop.cancelled().await;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        tracing::info!(
            "stopping: no new requests; running jobs are interrupted and resume at next start"
        );
        jobs.shutdown(JOB_GRACE).await;
    };
    // Long polls and event streams get a few seconds to end before the daemon exits anyway.
    let serving = async {
        let result = tokio::select! {
            r = server => r.context("serving"),
            _ = async {
                stop.cancelled().await;
                tokio::time::sleep(CONNECTION_GRACE).await;
            } => Ok(()),
        };
        stop.cancel();
        result
    };
    let (served, ()) = tokio::join!(serving, stopping);
    served?;
    if let (Listen::Unix(path), false) = (&config.listen, inherited) {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    Ok(())
}

/// Takes the exclusive lock of `dir` (`dir/.hoist.lock`), or says which daemon has it.
fn lock_folder(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join(".hoist.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |_| {
            anyhow::anyhow!(
                "another hoist daemon is using {} (it holds {}); give each daemon its own \
                 HOIST_DATA_DIR and HOIST_CACHE_DIR",
                dir.display(),
                path.display()
            )
        },
    )?;
    Ok(file)
}

async fn watch_signals(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    stop.cancel();
}

/// Stops the daemon once no job is queued or running and no request came for `idle`.
async fn watch_idle(
    jobs: Jobs,
    last_request: Arc<AtomicU64>,
    idle: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let quiet = now_secs().saturating_sub(last_request.load(Ordering::Relaxed));
        if quiet >= idle.as_secs() && !jobs.busy().await {
            tracing::info!(
                idle_seconds = quiet,
                "idle: exiting until the next connection"
            );
            stop.cancel();
            return;
        }
    }
}
