//! `passthroughfs [-f] [-d] [-o OPTIONS] SOURCE MOUNTPOINT`

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use fuse_server::{NoCustody, Session};
use passthroughfs::daemon::{Ready, daemonize};
use passthroughfs::{Options, Passthrough, USAGE};
use signal_hook::consts::{SIGINT, SIGTERM};

fn main() -> ExitCode {
    let mut options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("passthroughfs: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let filter = if options.debug { "debug" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    for path in [&mut options.source, &mut options.mountpoint] {
        match std::fs::canonicalize(&*path) {
            Ok(abs) => *path = abs,
            Err(err) => {
                eprintln!("passthroughfs: {}: {err}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let ready = if options.foreground {
        Ready::foreground()
    } else {
        match daemonize() {
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
    let started = start(options);
    let session = match started {
        Ok(session) => {
            ready.ok().context("reporting readiness")?;
            session
        }
        Err(err) => {
            ready.failed(&format!("{err:#}"));
            return Err(err);
        }
    };
    let mountpoint = options.mountpoint.clone();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing signal handlers")?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(signal, "unmounting");
                if let Err(err) = fuse_transport::unmount_detached(&mountpoint) {
                    tracing::warn!(%err, "unmount");
                }
            }
        })
        .context("starting the signal thread")?;
    let result = session.run();
    handle.close();
    result.context("serving")
}

fn start(options: &Options) -> anyhow::Result<Session<Passthrough>> {
    raise_fd_limit();
    // Modes arrive already masked by the caller's umask.
    rustix::process::umask(rustix::fs::Mode::empty());
    let fs = Passthrough::new(&options.source, options.fs.clone(), None)
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
