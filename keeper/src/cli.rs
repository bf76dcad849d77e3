//! Command line (clap): parse, run, map errors to exit codes (2 for usage, 1 for failures).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand};
use fuse_keeper::daemon::{self, Config, Limits, MetricsAddr};
use fuse_keeper::{KeeperClient, KeeperError, socket_path};

/// How long `umount` waits for the keeper.
const UMOUNT_TIMEOUT: Duration = Duration::from_millis(900);

const AFTER_HELP: &str = "\
The socket is $FUSE_KEEPER_SOCKET if set, else /run/fuse-keeper/keeper.sock for root, else
$XDG_RUNTIME_DIR/fuse-keeper.sock. Protocol and limits: docs/keeper-protocol.md.";

/// The FUSE connection keeper: holds every recoverable FUSE connection's /dev/fuse fds and
/// state so that mounts outlive their server, and hands them back only to the rescue uid.
#[derive(Debug, Parser)]
#[command(name = "fuse-keeper", version, after_help = AFTER_HELP, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the keeper (in the foreground; systemd units, containers, or a server starting one
    /// on demand run it).
    Serve(ServeArgs),
    /// List the connections you may see (root: all), with their recoveries.
    Ls {
        /// JSON (a versioned schema: docs/keeper-protocol.md, "fuse-keeper ls --json").
        #[arg(long)]
        json: bool,
    },
    /// Print the keeper's metrics once, in the Prometheus text format (root or the keeper's uid).
    Metrics,
    /// Abort a connection (its applications get ENOTCONN) and detach its mount.
    Abort {
        /// A tag (your own first), or an absolute mountpoint.
        target: String,
    },
    /// Unmount promptly, whatever the server's state; without a keeper, abort and detach a
    /// FUSE mountpoint directly.
    Umount {
        /// A tag (your own first), or an absolute mountpoint.
        target: String,
    },
    /// Print a shell completion script for this command (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from the same definitions as --help.
    Man,
}

/// `serve`'s options (defaults: docs/keeper-protocol.md, "Limits and hostile clients").
#[derive(Debug, Args)]
struct ServeArgs {
    /// Let root ATTACH whatever a connection's rescue uid.
    #[arg(long)]
    root_may_attach: bool,
    /// Connections one principal (uid, or user namespace) may hold.
    #[arg(long, value_name = "N", default_value_t = daemon::DEFAULT_MAX_TAGS_PER_UID,
          value_parser = positive)]
    max_tags_per_uid: usize,
    /// Fds one principal's connections may make the keeper hold [default: an eighth of the
    /// connections' share of the fd limit].
    #[arg(long, value_name = "N", value_parser = positive)]
    max_fds_per_uid: Option<usize>,
    /// Allocated state-store bytes one principal's connections may hold (K, M, G suffixes).
    #[arg(long, value_name = "BYTES", default_value = "2G", value_parser = bytes)]
    max_state_bytes_per_uid: u64,
    /// Client connections at once, all uids together.
    #[arg(long, value_name = "N", default_value_t = daemon::DEFAULT_MAX_CLIENTS,
          value_parser = positive)]
    max_clients: usize,
    /// Client connections at once for one uid other than root and the keeper's.
    #[arg(long, value_name = "N", default_value_t = daemon::DEFAULT_MAX_CLIENTS_PER_UID,
          value_parser = positive)]
    max_clients_per_uid: usize,
    /// Close a client that has not sent a well-formed request this long after connecting.
    #[arg(long, value_name = "MS", value_parser = positive,
          default_value_t = daemon::DEFAULT_FIRST_REQUEST_TIMEOUT.as_millis() as usize)]
    first_request_timeout_ms: usize,
    /// Serve Prometheus metrics over HTTP at GET /metrics: HOST:PORT (TCP; e.g.
    /// 127.0.0.1:9464) or an absolute path (a Unix stream socket, mode 0600).
    #[arg(long, value_name = "ADDR", value_parser = metrics_addr)]
    metrics: Option<MetricsAddr>,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("needs a whole number above 0".into()),
    }
}

/// A byte count: digits with an optional K, M or G suffix (powers of 1024), above 0.
fn bytes(v: &str) -> Result<u64, String> {
    let bad = || "needs a byte count above 0 (digits, then K, M or G)".to_owned();
    let (digits, shift) = match v.as_bytes().last() {
        Some(b'K' | b'k') => (&v[..v.len() - 1], 10),
        Some(b'M' | b'm') => (&v[..v.len() - 1], 20),
        Some(b'G' | b'g') => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).filter(|&n| n > 0).ok_or_else(bad)
}

fn metrics_addr(v: &str) -> Result<MetricsAddr, String> {
    v.parse()
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0, usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fuse-keeper: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Serve(args) => serve(&serve_config(args)),
        Command::Ls { json } => ls(json),
        Command::Metrics => {
            let text = connect()?.metrics()?;
            std::io::stdout().lock().write_all(text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Abort { target } => abort(&target),
        Command::Umount { target } => umount(&target),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "fuse-keeper", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve_config(args: ServeArgs) -> Config {
    Config {
        socket: socket_path(),
        root_may_attach: args.root_may_attach,
        limits: Limits {
            max_tags_per_uid: args.max_tags_per_uid,
            max_fds_per_uid: args.max_fds_per_uid,
            max_state_bytes_per_uid: args.max_state_bytes_per_uid,
            max_clients: args.max_clients,
            max_clients_per_uid: args.max_clients_per_uid,
            first_request_timeout: Duration::from_millis(args.first_request_timeout_ms as u64),
        },
        metrics: args.metrics,
    }
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

/// A client of the keeper; the error says where it looked and what to do.
fn connect() -> Result<KeeperClient> {
    KeeperClient::connect(&socket_path()).map_err(|e| match e {
        KeeperError::Connect { .. } => anyhow::anyhow!(
            "{e}: is the keeper running? Start it with `fuse-keeper serve` (or its systemd \
             unit), or set FUSE_KEEPER_SOCKET to its socket"
        ),
        e => e.into(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn byte_counts_take_suffixes_and_refuse_zero() {
        assert_eq!(bytes("2G"), Ok(2 << 30));
        assert_eq!(bytes("512k"), Ok(512 << 10));
        assert_eq!(bytes("7"), Ok(7));
        assert!(bytes("0").is_err() && bytes("G").is_err() && bytes("-1M").is_err());
        assert!(bytes("99999999999G").is_err(), "overflow");
    }

    #[test]
    fn serve_defaults_are_the_daemons() {
        let Cli { command: Command::Serve(args) } = Cli::parse_from(["fuse-keeper", "serve"])
        else {
            panic!("not serve");
        };
        let config = serve_config(args);
        assert_eq!(config.limits, Limits::default());
        assert!(!config.root_may_attach && config.metrics.is_none());
    }
}
