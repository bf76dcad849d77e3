//! `passthroughfs [-f] [-d] [-o OPTIONS] SOURCE MOUNTPOINT`

#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use fuse_recovery::{Ended, RecoveryError, RecoveryOptions, Served, Standing, Started};
use fuse_server::{NoCustody, Session, notify};
use passthroughfs::daemon::{Ready, daemonize};
use passthroughfs::{Options, Passthrough, USAGE, UsageError};

fn main() -> ExitCode {
    let matches = match passthroughfs::options::command().try_get_matches() {
        Ok(matches) => matches,
        Err(err) if !err.use_stderr() => {
            // --help, --version: clap prints them on stdout.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => return usage_error(UsageError::from(err)),
    };
    if matches.get_flag("generate-man") {
        return match passthroughfs::options::man_page(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("passthroughfs: writing the man page: {err}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(shell) = matches.get_one::<clap_complete::Shell>("generate-completions") {
        passthroughfs::options::completions(*shell, &mut std::io::stdout().lock());
        return ExitCode::SUCCESS;
    }
    let mut options = match Options::from_matches(&matches) {
        Ok(options) => options,
        Err(err) => return usage_error(err),
    };
    options.secure_defaults(rustix::process::geteuid().is_root());
    let filter = if options.debug { "debug" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: not in a log file or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The source is resolved; of the mountpoint only the directory it is in (the mountpoint
    // may be a mount whose server is dead, a restart re-attaching to it, where any stat would
    // block): the keeper refuses a path with `..` or a symlink in it.
    match std::fs::canonicalize(&options.source) {
        Ok(abs) => options.source = abs,
        Err(err) => {
            eprintln!("passthroughfs: source {}: {err}", options.source.display());
            return ExitCode::FAILURE;
        }
    }
    if let Err(message) = resolve_mountpoint(&options.mountpoint).and_then(|abs| {
        check_mountpoint(&abs)?;
        options.mountpoint = abs;
        Ok(())
    }) {
        eprintln!("passthroughfs: {message}");
        return ExitCode::FAILURE;
    }
    let ready = if options.foreground {
        Ready::foreground()
    } else {
        #[allow(unsafe_code)]
        // SAFETY: no thread has been started yet: only argument parsing, the log subscriber
        // (which starts none) and path resolution ran before.
        match unsafe { daemonize() } {
            Ok(ready) => ready,
            Err(err) => {
                eprintln!("passthroughfs: daemonizing: {err}");
                return ExitCode::FAILURE;
            }
        }
    };
    // Started by a process holding files on the mount, or from a directory in it (a shell in
    // the mount re-attaching a crashed server): kept, those would pin the mount to this very
    // process, and a lazy unmount or a SIGTERM would leave it serving itself for ever.
    for fd in fuse_transport::close_fds_on(&options.mountpoint) {
        tracing::info!(fd, "closed an inherited fd on the mount");
    }
    if fuse_transport::cwd_on(&options.mountpoint)
        && let Err(err) = std::env::set_current_dir("/")
    {
        tracing::warn!(%err, "leaving a working directory on the mount");
    }
    let mut ready = Some(ready);
    match run(&options, &mut ready) {
        Ok(()) => ExitCode::SUCCESS,
        // A standby whose connection ended cleanly has done its job: said, and exit 0.
        Err(err) if dismissed(&err) => {
            tracing::info!("{err:#}");
            tell_systemd(notify::stopping(), "STOPPING=1");
            match ready.take() {
                Some(ready) => ready.failed(&format!("{err:#}")),
                None => eprintln!("passthroughfs: {err:#}; exiting"),
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            let message = describe(&err, &options);
            // Said once: to the waiting parent (which prints it) or, in the foreground or once
            // the mount was up, here.
            match ready.take() {
                Some(ready) => ready.failed(&message),
                None => eprintln!("passthroughfs: {message}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// True if `err` is a standby's connection ending before it took it over.
fn dismissed(err: &anyhow::Error) -> bool {
    err.chain().any(|c| matches!(c.downcast_ref(), Some(RecoveryError::Dismissed { .. })))
}

/// The error's chain, each cause once, and what to do about it where that is known.
fn describe(err: &anyhow::Error, options: &Options) -> String {
    let hint = err.chain().find_map(|cause| {
        if let Some(fuse_server::SessionError::Mount { path, error }) = cause.downcast_ref() {
            return (error.raw_os_error() == Some(libc::ENOENT))
                .then(|| format!("create the mountpoint first: mkdir -p {path}"));
        }
        if let Some(fuse_recovery::RecoveryError::Keeper { source, .. }) = cause.downcast_ref() {
            let start = options.recovery.as_ref().is_some_and(|r| !r.start_keeper);
            return (start && source.is_unavailable()).then(|| {
                "start the keeper (fuse-keeper serve, or systemctl start fuse-keeper), or \
                 leave out nokeeper_start to have passthroughfs start one"
                    .to_string()
            });
        }
        None
    });
    match hint {
        Some(hint) => format!("{err:#}\nhint: {hint}"),
        None => format!("{err:#}"),
    }
}

fn run(options: &Options, ready: &mut Option<Ready>) -> anyhow::Result<()> {
    if let Some(addr) = &options.metrics {
        // After daemonizing: the listener's thread must be the serving process's.
        serve_metrics(addr, &options.session.stats)?;
    }
    if options.recovery.is_some() {
        return run_recoverable(options, ready);
    }
    let session = start(options)?;
    // Before readiness is reported: a SIGTERM right after it must unmount, not kill.
    let signals = fuse_server::unmount_on_signal(&options.mountpoint)
        .context("installing signal handlers")?;
    tell_systemd(notify::serving("serving"), "READY=1");
    if let Some(ready) = ready.take() {
        ready.ok().context("reporting readiness")?;
    }
    let result = session.run();
    signals.close();
    if result.is_ok() {
        tell_systemd(notify::stopping(), "STOPPING=1");
    }
    result.context("serving")
}

/// Says what is wrong with the command line, and how it goes; exit status 2.
fn usage_error(err: UsageError) -> ExitCode {
    eprintln!("passthroughfs: {err}\n{USAGE}\nTry 'passthroughfs --help' for the options.");
    ExitCode::from(2)
}

/// What a service manager was told (`$NOTIFY_SOCKET`, see [`fuse_server::notify`]): a failure
/// is logged, never fatal (the mount serves whatever systemd hears).
fn tell_systemd(sent: std::io::Result<bool>, what: &str) {
    match sent {
        Ok(true) => tracing::debug!(what, "notified the service manager"),
        Ok(false) => {}
        Err(err) => tracing::warn!(%err, what, "cannot notify the service manager"),
    }
}

/// The `STATUS=` a service manager shows for how the session started.
fn status(started: Started) -> &'static str {
    match started {
        Started::Fresh => "serving",
        Started::Attached { .. } => "attached",
        Started::HandedOver { .. } => "handed over",
    }
}

/// `path` resolved as [`fuse_transport::resolve_mountpoint`] does; the error says so, with
/// what to do.
fn resolve_mountpoint(path: &Path) -> Result<PathBuf, String> {
    fuse_transport::resolve_mountpoint(path).map_err(|err| mountpoint_error(path, err))
}

/// A mountpoint that is not a FUSE mount already (whose server may be dead: stat could
/// block) must be a directory: the kernel would mount the source's root directory on a file,
/// and then find it is not one.
fn check_mountpoint(abs: &Path) -> Result<(), String> {
    if fuse_transport::is_fuse_mount(abs) {
        return Ok(());
    }
    match std::fs::metadata(abs) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!("mountpoint {} is not a directory", abs.display())),
        Err(err) => Err(mountpoint_error(abs, err)),
    }
}

/// `err` about the mountpoint `path`, with the hint to create it if it is missing.
fn mountpoint_error(path: &Path, err: std::io::Error) -> String {
    let mut message = format!("mountpoint {}: {err}", path.display());
    if err.kind() == std::io::ErrorKind::NotFound {
        message += &format!("\nhint: create it first: mkdir -p {}", path.display());
    }
    message
}

/// With `-o tag=`: re-attach to the keeper's connection for the tag, or mount fresh and
/// register it.
fn run_recoverable(options: &Options, ready: &mut Option<Ready>) -> anyhow::Result<()> {
    let recovery = options.recovery.as_ref().context("no tag")?;
    let recovery = RecoveryOptions {
        tag: recovery.tag.clone(),
        rescue_uid: recovery.rescue_uid.unwrap_or_else(|| rustix::process::getuid().as_raw()),
        recovery_timeout: recovery.recovery_timeout,
        sockets: if recovery.sockets.is_empty() {
            vec![fuse_keeper_client::socket_path()]
        } else {
            recovery.sockets.clone()
        },
        start_keeper: recovery.start_keeper,
        journal: recovery.journal,
        handover: recovery.handover,
        allow_handover: recovery.allow_handover,
        fail_on_timeout: recovery.fail_on_timeout,
        standby: recovery.standby,
        standby_when_served: recovery.standby_when_served,
        // passthroughfs's requests leave no I/O in flight once its threads are gone.
        liveness: true,
    };
    raise_fd_limit();
    rustix::process::umask(rustix::fs::Mode::empty());
    // A standby's signal stops the standby, never the mount it stands by for, until it serves.
    let may_stand_by = recovery.standby || recovery.standby_when_served;
    let serving = Arc::new(std::sync::atomic::AtomicBool::new(!may_stand_by));
    let signals = fuse_server::unmount_on_signal_once_serving(&options.mountpoint, serving.clone())
        .context("installing signal handlers")?;
    // A standby reports readiness once parked (the parent exits, systemd's start job ends:
    // a kill of the server is covered from then on), and again as it takes over.
    let ready = std::cell::RefCell::new(ready);
    let report_ready = |status: &str| {
        // Before the readiness pipe: a parent started by ExecReload exits once it hears,
        // and systemd must know the new main pid by then.
        tell_systemd(notify::serving(status), "READY=1");
        if let Some(ready) = ready.borrow_mut().take()
            && let Err(err) = ready.ok()
        {
            tracing::warn!(%err, "reporting readiness");
        }
    };
    let result = fuse_recovery::serve_with(
        &options.mountpoint,
        &options.mount,
        options.session.clone(),
        &recovery,
        |store| {
            Passthrough::new(&options.source, options.fs.clone(), store)
                .with_context(|| format!("opening source {}", options.source.display()))
                .map_err(Into::into)
        },
        |standing| match standing {
            Standing::Parked { socket } => {
                tracing::info!(socket = %socket.display(), "standby parked at the keeper");
                report_ready("standby");
            }
            Standing::Waiting { why } => {
                tell_systemd(
                    notify::notify(&format!("STATUS=standby, not parked: {why}")),
                    "STATUS=",
                );
            }
        },
        |started| {
            serving.store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::info!(?started, "serving");
            report_ready(status(started));
        },
    );
    signals.close();
    match &result {
        Ok(Served { ended: Ended::Unmounted, .. }) => {
            tell_systemd(notify::stopping(), "STOPPING=1");
        }
        // Not STOPPING=1: the service goes on in the new server, which systemd must follow
        // before it sees this one exit.
        Ok(Served { ended: Ended::HandedOver { to_pid }, .. }) => {
            tell_systemd(notify::main_pid_moved_to(*to_pid), "MAINPID=");
        }
        Err(_) => {}
    }
    // Each step says its own context: mounting, the keeper, the filesystem, serving.
    result.map(|_| ()).map_err(anyhow::Error::from)
}

fn start(options: &Options) -> anyhow::Result<Session<Passthrough>> {
    raise_fd_limit();
    // Modes arrive already masked by the caller's umask.
    rustix::process::umask(rustix::fs::Mode::empty());
    let fs = Passthrough::new(&options.source, options.fs.clone(), Passthrough::new_store()?)
        .with_context(|| format!("opening source {}", options.source.display()))?;
    let channel = fuse_server::mount(&options.mountpoint, &options.mount, Arc::new(NoCustody))?;
    Session::start(fs, channel, options.session.clone()).map_err(|err| {
        let _ = fuse_transport::force_unmount(Path::new(&options.mountpoint));
        anyhow::Error::from(err)
    })
}

/// `-o metrics=ADDR`: the session's counters at `GET /metrics`. A server taking over from a
/// live one (`handover`) finds the address still bound by it: it binds once the old one has
/// exited, retrying in the background.
fn serve_metrics(
    addr: &fuse_keeper_client::metrics_http::MetricsAddr,
    stats: &Arc<fuse_server::RequestStats>,
) -> anyhow::Result<()> {
    use fuse_keeper_client::metrics_http;
    let render = |stats: Arc<fuse_server::RequestStats>| -> metrics_http::Render {
        Box::new(move || Ok(stats.prometheus()))
    };
    match metrics_http::start(addr, "metrics", render(Arc::clone(stats))) {
        Ok(bound) => tracing::info!(addr = %bound, "serving metrics"),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(%addr, "metrics address in use (a handover?): retrying");
            let (addr, stats) = (addr.clone(), Arc::clone(stats));
            std::thread::Builder::new().name("metrics-bind".into()).spawn(move || {
                for _ in 0..600 {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    if let Ok(bound) = metrics_http::start(&addr, "metrics", render(stats.clone())) {
                        tracing::info!(addr = %bound, "serving metrics");
                        return;
                    }
                }
                tracing::warn!(%addr, "metrics address still in use after 60 s: not serving metrics");
            })?;
        }
        Err(e) => return Err(anyhow::Error::from(e).context(format!("serving metrics at {addr}"))),
    }
    Ok(())
}

/// Every inode the kernel holds is an open fd here: allow as many as the hard limit.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}
