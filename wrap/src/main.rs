//! `fuse-wrap [-f] [-o OPTIONS] MOUNTPOINT -- COMMAND [ARGS...]`: mounts MOUNTPOINT and serves
//! it through COMMAND, a stock FUSE server started with `%m` in its arguments replaced by
//! `/dev/fd/N`, and started again whenever it dies.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use fuse_recovery::RecoveryOptions;
use fuse_recovery::store::Store;
use fuse_server::{MountOptions, NoCustody, Session, SessionConfig};
use fuse_wrap::upstream::{RestartPolicy, StockCommand, Upstream};
use fuse_wrap::{RELAYED, Wrap};

const USAGE: &str = "usage: fuse-wrap [-f] [-o OPTIONS] MOUNTPOINT -- COMMAND [ARGS...]
  COMMAND is a FUSE server run in the foreground; %m in ARGS becomes /dev/fd/N.
  OPTIONS (comma-separated):
    tag=NAME              recoverable: the connection is kept by the keeper under NAME
    keeper=SOCKET[:...]   the keepers' sockets; nokeeper_start: never start one
    rescue_uid=UID        the uid allowed to attach after a crash (default: ours)
    recovery_timeout=SECS how long the keeper keeps an orphaned mount (default: for ever)
    allow_other, default_permissions, ro, fsname=NAME, subtype=NAME   mount options;
                          default_permissions is on with allow_other as root (the server's own
                          -o default_permissions goes nowhere: it mounts nothing), unless
                          nodefault_permissions (for a server that checks permissions itself)
    suid, dev, exec, noexec, noatime, ...  mount flags (nosuid,nodev by default, as libfuse);
                          give those the server would have mounted with itself: it is not
                          asked (fuse-overlayfs as root: default_permissions,suid,noatime)
    threads=N             workers reading the kernel's requests (default 4)
    restart_limit=N       most restarts of COMMAND per minute (default 20)
    watchdog=SECS         a request unanswered this long restarts COMMAND (default 60, 0: off)
    debug                 log every request";

/// Generic mount flags (mount(8)'s names) passed to the mount as they are.
const MOUNT_FLAGS: &[&str] = &[
    "rw",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "sync",
    "async",
    "dirsync",
    "nosymfollow",
];

struct Args {
    mountpoint: PathBuf,
    command: Vec<OsString>,
    mount: MountOptions,
    tag: Option<String>,
    sockets: Vec<PathBuf>,
    start_keeper: bool,
    rescue_uid: Option<u32>,
    recovery_timeout: Option<Duration>,
    threads: usize,
    policy: RestartPolicy,
    debug: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args_os().skip(1);
    let mut mount = MountOptions { subtype: Some("wrap".into()), ..MountOptions::default() };
    let mut no_default_permissions = false;
    let mut out = Args {
        mountpoint: PathBuf::new(),
        command: Vec::new(),
        mount: MountOptions::default(),
        tag: None,
        sockets: Vec::new(),
        start_keeper: true,
        rescue_uid: None,
        recovery_timeout: None,
        threads: 4,
        policy: RestartPolicy::default(),
        debug: false,
    };
    let mut mountpoint = None;
    let number =
        |opt: &str, v: &str| v.parse::<u64>().map_err(|_| format!("{opt}: not a number: {v}"));
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--") => {
                out.command = args.by_ref().collect();
                break;
            }
            Some("-f") => {}
            Some("-o") => {
                let list = args.next().ok_or("-o needs options")?;
                let list = list.to_str().ok_or("options must be UTF-8")?.to_owned();
                for opt in list.split(',').filter(|o| !o.is_empty()) {
                    match opt.split_once('=') {
                        Some(("tag", v)) => out.tag = Some(v.to_owned()),
                        Some(("keeper", v)) => out.sockets.extend(v.split(':').map(PathBuf::from)),
                        Some(("rescue_uid", v)) => out.rescue_uid = Some(number(opt, v)? as u32),
                        Some(("recovery_timeout", v)) => {
                            out.recovery_timeout = Some(Duration::from_secs(number(opt, v)?))
                        }
                        Some(("fsname", v)) => mount.fsname = Some(v.to_owned()),
                        Some(("subtype", v)) => mount.subtype = Some(v.to_owned()),
                        Some(("threads", v)) => {
                            out.threads = (number(opt, v)? as usize).clamp(1, 64)
                        }
                        Some(("restart_limit", v)) => out.policy.limit = number(opt, v)? as u32,
                        Some(("watchdog", v)) => {
                            let secs = number(opt, v)?;
                            out.policy.watchdog = (secs > 0).then(|| Duration::from_secs(secs));
                        }
                        None if opt == "allow_other" => mount.allow_other = true,
                        None if opt == "default_permissions" => mount.default_permissions = true,
                        None if opt == "nodefault_permissions" => no_default_permissions = true,
                        None if opt == "ro" => mount.read_only = true,
                        None if opt == "nokeeper_start" => out.start_keeper = false,
                        None if opt == "debug" => out.debug = true,
                        None if MOUNT_FLAGS.contains(&opt) => mount.extra.push(opt.to_owned()),
                        _ => return Err(format!("unknown option {opt}")),
                    }
                }
            }
            _ if mountpoint.is_none() => mountpoint = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {}", arg.to_string_lossy())),
        }
    }
    // A root mount other users may enter is checked by the kernel unless asked otherwise, as
    // passthroughfs's (docs/SECURITY.md): a stock server told `-o default_permissions` on
    // its own command line no longer mounts anything, and most check nothing themselves.
    if mount.allow_other && rustix::process::geteuid().is_root() && !no_default_permissions {
        mount.default_permissions = true;
    }
    out.mountpoint = mountpoint.ok_or("no mountpoint")?;
    if out.command.is_empty() {
        return Err("no command after --".into());
    }
    if !out.command.iter().any(|a| a.to_str().is_some_and(|s| s.contains("%m"))) {
        return Err("the command must have %m where the server takes its mountpoint".into());
    }
    if mount.fsname.is_none() {
        mount.fsname =
            Some(out.command[0].to_string_lossy().rsplit('/').next().unwrap_or("wrap").to_owned());
    }
    out.mount = mount;
    Ok(out)
}

fn main() -> ExitCode {
    let args = match parse().and_then(|mut args| {
        // The keeper records the mountpoint by its absolute path.
        args.mountpoint = fuse_transport::resolve_mountpoint(&args.mountpoint)
            .map_err(|err| format!("mountpoint {}: {err}", args.mountpoint.display()))?;
        Ok(args)
    }) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("fuse-wrap: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let filter = if args.debug { "debug" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fuse-wrap: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The largest reply a request may get: a READ or READDIR of `max_write` bytes (the
/// kernel's reads are no longer than its writes here), or an xattr list of 64 KiB.
fn max_reply(max_write: u32) -> usize {
    (max_write as usize).max(1 << 16) + 8192
}

/// Raises the limit of open files for the wrapper and the stock server it starts (which
/// inherits it): as root to the kernel's `nr_open` (at most 2^20), else the soft limit to the
/// hard one. A server holding an fd per inode the kernel knows (libfuse's passthrough_ll,
/// fuse-overlayfs) otherwise runs out at a few thousand inodes.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    // Root may raise the ceiling itself, up to the kernel's nr_open.
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        .min(1 << 20);
    if limit.maximum.is_some_and(|max| max < ceiling) {
        let raised = rustix::process::Rlimit { current: Some(ceiling), maximum: Some(ceiling) };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return;
        }
    }
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// At most one note a second at the keepers, however fast the stock server restarts.
const NOTE_EVERY: Duration = Duration::from_secs(1);
/// The same note again after this long without a restart (a keeper that restarted has none).
const NOTE_REFRESH: Duration = Duration::from_secs(60);

/// The stock server's program name as the note shows it: the last component of `argv0`, at
/// most 64 bytes (the keeper's note holds 128; `publish_note` makes it printable).
fn program_name(argv0: &std::ffi::OsStr) -> String {
    let name = argv0.to_string_lossy();
    let mut name = name.rsplit('/').next().unwrap_or_default().to_owned();
    while name.len() > 64 {
        name.pop();
    }
    name
}

/// What `fuse-keeper ls` shows for a wrapped mount.
fn note(program: &str, restarts: u64) -> String {
    let plural = if restarts == 1 { "" } else { "s" };
    format!("wrapped: {program}, {restarts} restart{plural}")
}

/// Publishes the mount's note (`fuse_recovery::publish_note`) once it is served (`started`
/// receives; dropped unsent if it never is): after each start of the stock server (its INIT
/// answered), at most once every [`NOTE_EVERY`], so that a crash loop sends one a second and
/// the latest count comes within a second of the last restart; and again after
/// [`NOTE_REFRESH`] without one. Returns when the wrapper stops or gives up.
fn publish_notes(
    up: &Upstream,
    options: &RecoveryOptions,
    program: &str,
    started: &mpsc::Receiver<()>,
) {
    if started.recv().is_err() {
        return;
    }
    let mut epoch = 0;
    let mut last: Option<Instant> = None;
    loop {
        match up.after_within(epoch, NOTE_REFRESH) {
            Ok(Some(conn)) => epoch = conn.epoch,
            Ok(None) => {}
            Err(_) => return,
        }
        if let Some(at) = last {
            std::thread::sleep(NOTE_EVERY.saturating_sub(at.elapsed()));
        }
        // The starts made meanwhile are in this note.
        if let Some(conn) = up.live() {
            epoch = epoch.max(conn.epoch);
        }
        fuse_recovery::publish_note(options, &note(program, up.restarts()));
        last = Some(Instant::now());
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    raise_fd_limit();
    // Before any stock server is started: none may inherit a file on the mount.
    for fd in fuse_transport::close_fds_on(&args.mountpoint) {
        tracing::info!(fd, "closed an inherited fd on the mount");
    }
    // Started from a shell in the mount: its cwd would pin the mount to the wrapper and to
    // every stock server (and a relative path in the command, resolved there, would name
    // files on the mount it serves).
    if fuse_transport::cwd_on(&args.mountpoint) {
        tracing::warn!("started in the mount it serves: working from / instead");
        if let Err(err) = std::env::set_current_dir("/") {
            tracing::warn!(%err, "leaving a working directory on the mount");
        }
    }
    let max_write = 1u32 << 20;
    let up = Upstream::start(
        StockCommand { argv: args.command.clone() },
        args.policy,
        fuse_wrap::offer(RELAYED, max_write),
        max_reply(max_write),
    )?;
    let conn =
        up.first().map_err(|why| anyhow::anyhow!("the stock server did not start: {why}"))?;
    let config = SessionConfig {
        max_write: conn.init.max_write.clamp(4096, max_write),
        max_readahead: conn.init.max_readahead.max(4096),
        writeback: conn.has(fuse_abi::FUSE_WRITEBACK_CACHE),
        extra_flags: conn.flags & fuse_abi::FUSE_DONT_MASK,
        threads: args.threads,
        ..SessionConfig::default()
    };
    drop(conn);
    let signals = fuse_server::unmount_on_signal(&args.mountpoint)?;
    let result = match &args.tag {
        Some(tag) => {
            let mut options = RecoveryOptions::new(tag.clone());
            options.start_keeper = args.start_keeper;
            if !args.sockets.is_empty() {
                options.sockets = args.sockets.clone();
            }
            if let Some(uid) = args.rescue_uid {
                options.rescue_uid = uid;
            }
            options.recovery_timeout = args.recovery_timeout;
            let (serving, started) = mpsc::channel();
            let (note_up, note_options) = (up.clone(), options.clone());
            let program = program_name(&args.command[0]);
            if let Err(err) = std::thread::Builder::new()
                .name("note".into())
                .spawn(move || publish_notes(&note_up, &note_options, &program, &started))
            {
                tracing::warn!(%err, "no thread to publish the mount's note");
            }
            let fs_up = up.clone();
            fuse_recovery::serve(
                &args.mountpoint,
                &args.mount,
                config,
                &options,
                move |store| Ok(Wrap::new(fs_up, store)?),
                move |started| {
                    tracing::info!(?started, "serving");
                    let _ = serving.send(());
                },
            )
            .map(|_| ())
            .map_err(anyhow::Error::from)
        }
        None => (|| {
            let store = Arc::new(Store::create("fuse-wrap", &fuse_wrap::TABLES)?);
            let fs = Wrap::new(up.clone(), store)?;
            let channel = fuse_server::mount(&args.mountpoint, &args.mount, Arc::new(NoCustody))?;
            Session::start(fs, channel, config)?.run()?;
            Ok(())
        })(),
    };
    signals.close();
    up.stop(Duration::from_secs(5));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_the_program_and_counts_restarts() {
        let program = program_name(std::ffi::OsStr::new("/usr/bin/sshfs"));
        assert_eq!(note(&program, 0), "wrapped: sshfs, 0 restarts");
        assert_eq!(note(&program, 1), "wrapped: sshfs, 1 restart");
        assert_eq!(note("fuse-overlayfs", 57), "wrapped: fuse-overlayfs, 57 restarts");
        let long = program_name(std::ffi::OsStr::new(&"é".repeat(100)));
        assert!(long.len() <= 64 && long.chars().all(|c| c == 'é'));
        assert!(note(&long, u64::MAX).len() <= fuse_keeper_client::protocol::MAX_NOTE);
    }
}
