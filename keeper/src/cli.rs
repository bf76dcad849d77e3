//! Command line: parse, run, map errors to exit codes (2 for usage).

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use fuse_keeper::daemon::{self, Config, Limits};
use fuse_keeper::{KeeperClient, KeeperError, socket_path};

const USAGE: &str = "\
usage: fuse-keeper serve [--root-may-attach] [--max-tags-per-uid N] [--max-fds-per-uid N]
                         [--max-state-bytes-per-uid BYTES[K|M|G]] [--max-clients N]
                         [--max-clients-per-uid N] [--first-request-timeout-ms MS]
       fuse-keeper ls [--json]
       fuse-keeper abort TAG|MOUNTPOINT
       fuse-keeper umount TAG|MOUNTPOINT

The socket is $FUSE_KEEPER_SOCKET if set, else /run/fuse-keeper/keeper.sock for root, else
$XDG_RUNTIME_DIR/fuse-keeper.sock.";

/// How long `umount` waits for the keeper.
const UMOUNT_TIMEOUT: Duration = Duration::from_millis(900);

struct Usage(String);

pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let args: Vec<String> = match args.into_iter().map(OsString::into_string).collect() {
        Ok(a) => a,
        Err(bad) => return usage(&format!("argument is not UTF-8: {bad:?}")),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&args) {
        Ok(Ok(code)) => code,
        Ok(Err(Usage(msg))) => usage(&msg),
        Err(e) => {
            eprintln!("fuse-keeper: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    if !msg.is_empty() {
        eprintln!("fuse-keeper: {msg}");
    }
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn one_arg<'a>(cmd: &str, rest: &[&'a str]) -> Result<&'a str, Usage> {
    match rest {
        [arg] if !arg.starts_with('-') => Ok(arg),
        _ => Err(Usage(format!("{cmd} takes exactly one TAG or MOUNTPOINT"))),
    }
}

fn run(args: &[&str]) -> Result<Result<ExitCode, Usage>> {
    let Some((&cmd, rest)) = args.split_first() else {
        return Ok(Err(Usage(String::new())));
    };
    let code = match (cmd, rest) {
        ("serve", opts) => match serve_config(opts) {
            Ok(config) => serve(&config)?,
            Err(u) => return Ok(Err(u)),
        },
        ("ls", []) => ls(false)?,
        ("ls", ["--json"]) => ls(true)?,
        ("abort", _) => match one_arg(cmd, rest) {
            Ok(target) => abort(target)?,
            Err(u) => return Ok(Err(u)),
        },
        ("umount", _) => match one_arg(cmd, rest) {
            Ok(target) => umount(target)?,
            Err(u) => return Ok(Err(u)),
        },
        ("help" | "--help" | "-h", []) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => return Ok(Err(Usage(format!("unknown command or arguments: {}", args.join(" "))))),
    };
    Ok(Ok(code))
}

/// `serve`'s options (defaults: docs/keeper-protocol.md, "Limits and hostile clients").
fn serve_config(opts: &[&str]) -> Result<Config, Usage> {
    let mut config =
        Config { socket: socket_path(), root_may_attach: false, limits: Limits::default() };
    let limits = &mut config.limits;
    let mut it = opts.iter();
    while let Some(&opt) = it.next() {
        let positive = |v: Option<&&str>| {
            parse_opt::<usize>(opt, v)
                .and_then(|n| if n > 0 { Ok(n) } else { Err(Usage(format!("{opt} must be > 0"))) })
        };
        match opt {
            "--root-may-attach" => config.root_may_attach = true,
            "--max-tags-per-uid" => limits.max_tags_per_uid = positive(it.next())?,
            "--max-fds-per-uid" => limits.max_fds_per_uid = Some(positive(it.next())?),
            "--max-state-bytes-per-uid" => {
                limits.max_state_bytes_per_uid = bytes(opt, it.next())?;
            }
            "--max-clients" => limits.max_clients = positive(it.next())?,
            "--max-clients-per-uid" => limits.max_clients_per_uid = positive(it.next())?,
            "--first-request-timeout-ms" => {
                let ms = positive(it.next())?;
                limits.first_request_timeout = Duration::from_millis(ms as u64);
            }
            _ => return Err(Usage(format!("unknown option for serve: {opt}"))),
        }
    }
    Ok(config)
}

fn serve(config: &Config) -> Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    daemon::serve(config)?;
    Ok(ExitCode::SUCCESS)
}

fn connect() -> Result<KeeperClient> {
    let path = socket_path();
    KeeperClient::connect(&path).with_context(|| "is the keeper running? (fuse-keeper serve)")
}

fn ls(json: bool) -> Result<ExitCode> {
    let entries = connect()?.list()?;
    let mut out = std::io::stdout().lock();
    let text = if json { crate::table::json(&entries) } else { crate::table::text(&entries) };
    out.write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn abort(target: &str) -> Result<ExitCode> {
    connect()?.abort(target)?;
    println!("aborted {target}");
    Ok(ExitCode::SUCCESS)
}

/// Ask the keeper; if none answers (or it does not hold the target) and the target is a FUSE
/// mountpoint, abort and detach it ourselves.
fn umount(target: &str) -> Result<ExitCode> {
    let asked = KeeperClient::connect(&socket_path()).and_then(|mut c| {
        c.set_timeout(Some(UMOUNT_TIMEOUT))?;
        c.umount(target)
    });
    match asked {
        Ok(()) => {
            println!("unmounted {target}");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) if fallback_allowed(&e, target) => {
            eprintln!("fuse-keeper: keeper: {e}; unmounting {target} directly");
        }
        Err(e) => return Err(e.into()),
    }
    fuse_transport::force_unmount(Path::new(target))?;
    println!("unmounted {target}");
    Ok(ExitCode::SUCCESS)
}

fn fallback_allowed(e: &KeeperError, target: &str) -> bool {
    let path = Path::new(target);
    let keeper_gone = e.is_unavailable()
        || matches!(e.errno(), Some(libc::EAGAIN | libc::ETIMEDOUT))
        || matches!(e.errno(), Some(libc::ENOENT | libc::EPERM))
            && matches!(e, KeeperError::Refused { .. });
    keeper_gone && path.is_absolute() && fuse_transport::is_fuse_mount(path)
}

/// A byte count: digits with an optional K, M or G suffix (powers of 1024), above 0.
fn bytes(name: &str, value: Option<&&str>) -> Result<u64, Usage> {
    let bad = || Usage(format!("{name} needs a byte count above 0 (digits, then K, M or G)"));
    let v = value.ok_or_else(bad)?;
    let (digits, shift) = match v.as_bytes().last() {
        Some(b'K' | b'k') => (&v[..v.len() - 1], 10),
        Some(b'M' | b'm') => (&v[..v.len() - 1], 20),
        Some(b'G' | b'g') => (&v[..v.len() - 1], 30),
        _ => (&v[..], 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).filter(|&n| n > 0).ok_or_else(bad)
}

fn parse_opt<T: std::str::FromStr>(name: &str, value: Option<&&str>) -> Result<T, Usage> {
    value.and_then(|v| v.parse().ok()).ok_or_else(|| Usage(format!("{name} needs a number")))
}
