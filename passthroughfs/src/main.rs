//! `passthroughfs [-f] [-d] [-o OPTIONS] SOURCE MOUNTPOINT`

#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use fuse_recovery::{Ended, RecoveryOptions, Served, Started};
use fuse_server::{NoCustody, Session, notify};
use passthroughfs::daemon::{Ready, daemonize};
use passthroughfs::{Options, Passthrough, USAGE};

fn main() -> ExitCode {
    let mut options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("passthroughfs: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    options.secure_defaults(rustix::process::geteuid().is_root());
    let filter = if options.debug { "debug" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // The source is resolved; of the mountpoint only the directory it is in (the mountpoint
    // may be a mount whose server is dead, a restart re-attaching to it, where any stat would
    // block): the keeper refuses a path with `..` or a symlink in it.
    match std::fs::canonicalize(&options.source) {
        Ok(abs) => options.source = abs,
        Err(err) => {
            eprintln!("passthroughfs: {}: {err}", options.source.display());
            return ExitCode::FAILURE;
        }
    }
    match resolve_mountpoint(&options.mountpoint) {
        Ok(abs) => options.mountpoint = abs,
        Err(err) => {
            eprintln!("passthroughfs: {}: {err}", options.mountpoint.display());
            return ExitCode::FAILURE;
        }
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
    match run(&options, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("passthroughfs: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options, ready: Ready) -> anyhow::Result<()> {
    if options.recovery.is_some() {
        return run_recoverable(options, ready);
    }
    let started = start(options);
    let session = match started {
        Ok(session) => session,
        Err(err) => {
            ready.failed(&format!("{err:#}"));
            return Err(err);
        }
    };
    // Before readiness is reported: a SIGTERM right after it must unmount, not kill.
    let signals = fuse_server::unmount_on_signal(&options.mountpoint)
        .context("installing signal handlers")?;
    tell_systemd(notify::serving("serving"), "READY=1");
    ready.ok().context("reporting readiness")?;
    let result = session.run();
    signals.close();
    if result.is_ok() {
        tell_systemd(notify::stopping(), "STOPPING=1");
    }
    result.context("serving")
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

/// `path` made absolute, its directory resolved (symlinks, `..`) but not its last component.
fn resolve_mountpoint(path: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => Ok(std::fs::canonicalize(dir)?.join(name)),
        // `/`, or a path ending in `..`: no last component to spare.
        _ => std::fs::canonicalize(&abs),
    }
}

/// With `-o tag=`: re-attach to the keeper's connection for the tag, or mount fresh and
/// register it.
fn run_recoverable(options: &Options, ready: Ready) -> anyhow::Result<()> {
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
    };
    raise_fd_limit();
    rustix::process::umask(rustix::fs::Mode::empty());
    let signals = fuse_server::unmount_on_signal(&options.mountpoint)
        .context("installing signal handlers")?;
    let mut ready = Some(ready);
    let result = fuse_recovery::serve(
        &options.mountpoint,
        &options.mount,
        options.session.clone(),
        &recovery,
        |store| Ok(Passthrough::new(&options.source, options.fs.clone(), store)?),
        |started| {
            tracing::info!(?started, "serving");
            // Before the readiness pipe: a parent started by ExecReload exits once it hears,
            // and systemd must know the new main pid by then.
            tell_systemd(notify::serving(status(started)), "READY=1");
            if let Some(ready) = ready.take()
                && let Err(err) = ready.ok()
            {
                tracing::warn!(%err, "reporting readiness");
            }
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
    let result = result.map(|_| ()).context("serving");
    if let Err(err) = &result
        && let Some(ready) = ready.take()
    {
        // The whole chain: the recovery error says which step, its sources what failed.
        ready.failed(&format!("{err:#}"));
    }
    result
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

/// Every inode the kernel holds is an open fd here: allow as many as the hard limit.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}
