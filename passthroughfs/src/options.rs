//! The command line: `passthroughfs [-f] [-d] [-o OPTIONS] SOURCE MOUNTPOINT`, with
//! libfuse-style `-o` options.

use std::path::PathBuf;
use std::time::Duration;

use fuse_server::SessionConfig;
use fuse_transport::MountOptions;

use crate::fs::FsConfig;

/// Everything the command line says.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: PathBuf,
    pub mountpoint: PathBuf,
    /// `-f`: stay in the foreground (default: daemonize, as libfuse does).
    pub foreground: bool,
    /// `-d`: debug logging (implies `-f`).
    pub debug: bool,
    pub mount: MountOptions,
    pub fs: FsConfig,
    pub session: SessionConfig,
    /// `-o tag=NAME`: recoverable through the keeper under this tag.
    pub recovery: Option<Recovery>,
    /// `nodefault_permissions`: leave the kernel's permission checks off even for a root
    /// server with `allow_other` (see [`Options::secure_defaults`]).
    pub no_default_permissions: bool,
    /// `metrics=ADDR`: serve the session's request counters (Prometheus text) at
    /// `GET /metrics` on `HOST:PORT` or a Unix socket path.
    pub metrics: Option<fuse_keeper_client::metrics_http::MetricsAddr>,
}

/// The recovery options (`tag=` and the options that only make sense with it).
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    pub tag: String,
    /// `rescue_uid=UID` (default: the mounting uid).
    pub rescue_uid: Option<u32>,
    /// `recovery_timeout=SECONDS` (default: wait for ever).
    pub recovery_timeout: Option<Duration>,
    /// `keeper=PATH[:PATH...]`: the keepers' sockets (default: FUSE_KEEPER_SOCKET or the
    /// standard path). With several, each keeper holds the connection.
    pub sockets: Vec<PathBuf>,
    /// `nokeeper_start`: fail instead of starting a keeper when none answers.
    pub start_keeper: bool,
    /// `nojournal`: do not journal non-idempotent requests (for measuring its cost only: a
    /// resent MKDIR may then answer EEXIST).
    pub journal: bool,
    /// `handover`: take the connection over from a live server too (planned upgrade).
    pub handover: bool,
    /// `nohandover`: refuse to hand the connection over to another server while alive.
    pub allow_handover: bool,
    /// `timeout_policy=fail`: when `recovery_timeout` passes, keep the mount and answer its
    /// requests with EIO until a server attaches (`abort`, the default, aborts the mount).
    pub fail_on_timeout: bool,
    /// `standby`: a hot standby: never mount; wait at the keeper for the tag's live server
    /// to die and take its connection over at once.
    pub standby: bool,
    /// `standby=auto`: serve as usual (attach, or mount fresh) unless a live server serves the
    /// tag; then stand by for it. Ignored with `handover` (which asks that server to stop).
    pub standby_when_served: bool,
}

/// A command line that cannot be used, with what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("unexpected argument {0:?}")]
    Unexpected(String),
    #[error("bad value for option {option}: {value:?}")]
    BadValue { option: String, value: String },
    #[error("-o needs an argument")]
    MissingOptionList,
    #[error("-o {0} needs -o tag=NAME")]
    NeedsTag(String),
    #[error(
        "-o standby and -o handover exclude each other (a standby waits for the server to die; a handover asks it to stop)"
    )]
    StandbyHandover,
    /// Anything else the argument parser refused (an argument that is not UTF-8, or
    /// `--help` asked of [`Options::parse`]), in its words.
    #[error("{0}")]
    Command(String),
}

/// The usage line.
pub const USAGE: &str = "usage: passthroughfs [-f] [-d] [-o OPTION[,OPTION...]] SOURCE MOUNTPOINT";

/// The `-o` options, as `--help` and the man page list them.
pub const OPTIONS_HELP: &str = "\
FUSE options (-o, comma-separated, repeatable):
  allow_other, default_permissions (on with allow_other as root, unless nodefault_permissions),
  ro, rw, fsname=NAME, subtype=NAME,
  entry_timeout=SECONDS, attr_timeout=SECONDS, writeback, threads=N,
  nopassthrough, metrics=HOST:PORT|PATH (request counters for Prometheus, GET /metrics),
  huge_buffers (workers' 1 MiB buffers of huge pages: 2 MiB each, a killed server exits
  faster; on with standby and standby=auto),
  remember_inodes=N (forgotten inodes file handles still open, default
  65536; 0: none), inode_file=PATH (file handles outlive the mount: the inode table is
  saved there at the end and restored by the next mount), and mount flags (nosuid, nodev,
  noexec, noatime, ...)
recovery (the mount outlives the server; the same command line re-attaches):
  tag=NAME, rescue_uid=UID, recovery_timeout=SECONDS, timeout_policy=abort|fail,
  keeper=SOCKET[:SOCKET...],
  nokeeper_start, handover (take over from a live server), nohandover (refuse to),
  standby (a hot standby: wait at the keeper for the server to die, then take over at once),
  standby=auto (serve, or stand by if a live server serves the tag),
  nojournal (measurement only)
ignored (mount(8), fstab and systemd conventions):
  defaults, auto, noauto, user, nouser, users, nofail, _netdev, comment=..., x-...";

/// The command line's definition: the one that parses it ([`Options::parse`],
/// [`Options::from_matches`]), prints `--help` and `--version`, and generates the man page
/// and the shell completions ([`man_page`], [`completions`]).
///
/// Options and the two paths may come in any order (mount.fuse3 runs
/// `passthroughfs SOURCE MOUNTPOINT -o OPTIONS`); `-o` may be repeated and glued (`-oro`).
pub fn command() -> clap::Command {
    use clap::{Arg, ArgAction, Command};
    Command::new("passthroughfs")
        .version(env!("CARGO_PKG_VERSION"))
        .about("A passthrough FUSE filesystem: mirrors SOURCE at MOUNTPOINT")
        .long_about(
            "A passthrough FUSE filesystem: mirrors the directory SOURCE at MOUNTPOINT, each \
             request run with its caller's credentials, reads and writes through kernel FUSE \
             passthrough. With -o tag=NAME the mount outlives the server: fuse-keeper holds \
             it, and the same command line re-attaches after a crash. Without -f it goes to \
             the background once the mount answers.",
        )
        .override_usage(USAGE.strip_prefix("usage: ").unwrap_or(USAGE))
        .after_help(OPTIONS_HELP)
        .arg(
            Arg::new("foreground")
                .short('f')
                .action(ArgAction::SetTrue)
                .help("Stay in the foreground (default: go to the background once mounted)"),
        )
        .arg(
            Arg::new("debug")
                .short('d')
                .action(ArgAction::SetTrue)
                .help("Log debug messages to stderr (implies -f)"),
        )
        .arg(
            Arg::new("options")
                .short('o')
                .value_name("OPTION[,OPTION...]")
                .action(ArgAction::Append)
                .allow_hyphen_values(true)
                .help("FUSE, mount and recovery options (listed below)"),
        )
        .arg(
            Arg::new("source")
                .value_name("SOURCE")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf))
                .value_hint(clap::ValueHint::DirPath)
                .help("The directory to mirror"),
        )
        .arg(
            Arg::new("mountpoint")
                .value_name("MOUNTPOINT")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf))
                .value_hint(clap::ValueHint::DirPath)
                .help("The directory to mount on"),
        )
        .arg(
            Arg::new("generate-man")
                .long("generate-man")
                .action(ArgAction::SetTrue)
                .exclusive(true)
                .hide(true)
                .help("Print the man page (roff) and exit"),
        )
        .arg(
            Arg::new("generate-completions")
                .long("generate-completions")
                .value_name("SHELL")
                .value_parser(clap::value_parser!(clap_complete::Shell))
                .exclusive(true)
                .hide(true)
                .help("Print the completion script for SHELL and exit"),
        )
}

/// Writes the man page, passthroughfs(8), generated from [`command`], with the `-o` options
/// as `--help` lists them and the fstab line.
pub fn man_page(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(command().after_help(None::<&str>)).section("8");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    // Verbatim (.nf): the list is laid out as in --help.
    let roff = |text: &str| text.replace('\\', "\\e").replace('-', "\\-");
    writeln!(out, ".SH \"MOUNT OPTIONS\"\n.nf\n{}\n.fi", roff(OPTIONS_HELP))?;
    writeln!(
        out,
        ".SH FSTAB\n{}\n.PP\n.nf\n{}\n.fi\n.PP\n{}",
        roff(FSTAB_INTRO),
        roff(FSTAB_LINE),
        roff(FSTAB_AFTER)
    )?;
    man.render_version_section(out)
}

const FSTAB_INTRO: &str = "mount(8) runs mount.fuse3 (as /sbin/mount.fuse or \
    /sbin/mount.fuse.passthroughfs), which runs passthroughfs SOURCE MOUNTPOINT -o OPTIONS \
    through /bin/sh, found on its default PATH (mount(8) clears PATH). An /etc/fstab line:";
const FSTAB_LINE: &str =
    "/srv/data  /mnt/data  fuse.passthroughfs  tag=data,allow_other,nofail  0 0";
const FSTAB_AFTER: &str = "After a crash of a server with tag=, the mount stays (fuse-keeper \
    holds it): mount /mnt/data runs a server that re-attaches. mount -a skips the line, as \
    it skips every mounted one.";

/// Writes `shell`'s completion script, generated from [`command`].
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut command(), "passthroughfs", out);
}

impl From<clap::Error> for UsageError {
    fn from(err: clap::Error) -> UsageError {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        let arg = match err.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(s)) => s.clone(),
            Some(ContextValue::Strings(v)) => v.first().cloned().unwrap_or_default(),
            _ => String::new(),
        };
        match err.kind() {
            ErrorKind::MissingRequiredArgument if arg.contains("SOURCE") => {
                UsageError::Missing("SOURCE")
            }
            ErrorKind::MissingRequiredArgument if arg.contains("MOUNTPOINT") => {
                UsageError::Missing("MOUNTPOINT")
            }
            ErrorKind::UnknownArgument if !arg.is_empty() => UsageError::Unexpected(arg),
            ErrorKind::InvalidValue | ErrorKind::NoEquals if arg.starts_with("-o") => {
                UsageError::MissingOptionList
            }
            _ => {
                // clap's own words, first line only, without its "error: " prefix.
                let text = err.render().to_string();
                let line = text.lines().next().unwrap_or_default();
                UsageError::Command(line.strip_prefix("error: ").unwrap_or(line).to_string())
            }
        }
    }
}

/// The options of mount(8), fstab and systemd that are not the filesystem's: mount(8) and
/// mount.fuse3 consume most of them, and passthroughfs ignores those that still reach it.
fn is_mount_convention(option: &str) -> bool {
    matches!(
        option,
        "defaults" | "auto" | "noauto" | "user" | "nouser" | "users" | "nofail" | "_netdev"
    ) || option.starts_with("x-")
        || option.starts_with("comment=")
}

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, UsageError> {
        let args = std::iter::once("passthroughfs".to_string()).chain(args);
        Options::from_matches(&command().try_get_matches_from(args)?)
    }

    /// The options of a command line [`command`] matched.
    pub fn from_matches(matches: &clap::ArgMatches) -> Result<Options, UsageError> {
        let path =
            |id: &str| {
                matches.get_one::<PathBuf>(id).cloned().ok_or(UsageError::Missing(
                    if id == "source" { "SOURCE" } else { "MOUNTPOINT" },
                ))
            };
        let source = path("source")?;
        let mountpoint = path("mountpoint")?;
        let lists: Vec<&String> =
            matches.get_many::<String>("options").map(Iterator::collect).unwrap_or_default();
        let foreground = matches.get_flag("foreground");
        let debug = matches.get_flag("debug");
        let mut opts = Options {
            source,
            mountpoint,
            foreground: foreground || debug,
            debug,
            mount: MountOptions {
                fsname: None,
                subtype: Some("passthroughfs".into()),
                ..MountOptions::default()
            },
            fs: FsConfig::default(),
            // 8 workers: on a 2-vCPU VM a single-threaded `ls -lR` (two GETXATTRs per file,
            // each a round trip) ran 10% faster than with 4, and 1.7x faster than with 1: a
            // worker already waiting on the idle CPU answers sooner than one that has just
            // written its reply. Each costs a cloned device fd and its buffers.
            session: SessionConfig {
                passthrough: true,
                threads: 8,
                // The caller's umask is applied by the source, which knows whether the parent
                // has a default ACL (the kernel's rule); without it the kernel masks modes
                // before sending them, default ACL or not.
                // The server kills setuid, setgid and security.capability on writes and
                // truncates (FUSE_HANDLE_KILLPRIV_V2): the source does, as it does for the
                // caller whose credentials each request runs with, by its own rule.
                extra_flags: fuse_abi::FUSE_DONT_MASK | fuse_abi::FUSE_HANDLE_KILLPRIV_V2,
                ..SessionConfig::default()
            },
            recovery: None,
            no_default_permissions: false,
            metrics: None,
        };
        let mut recovery = Recovery {
            tag: String::new(),
            rescue_uid: None,
            recovery_timeout: None,
            sockets: Vec::new(),
            start_keeper: true,
            journal: true,
            handover: false,
            allow_handover: true,
            fail_on_timeout: false,
            standby: false,
            standby_when_served: false,
        };
        let mut needs_tag = None;
        for list in &lists {
            for option in list.split(',').filter(|o| !o.is_empty()) {
                if is_mount_convention(option) {
                    continue;
                }
                if !recovery.apply(option)? {
                    opts.apply(option)?;
                } else if !option.starts_with("tag=") {
                    needs_tag = Some(option.to_string());
                }
            }
        }
        if recovery.standby && recovery.handover {
            return Err(UsageError::StandbyHandover);
        }
        if !recovery.tag.is_empty() {
            // A standby and the servers it stands by for die fast: SessionConfig::huge_buffers.
            if recovery.standby || recovery.standby_when_served {
                opts.session.huge_buffers = true;
            }
            opts.recovery = Some(recovery);
        } else if let Some(option) = needs_tag {
            return Err(UsageError::NeedsTag(option));
        }
        if opts.mount.fsname.is_none() {
            opts.mount.fsname = Some(opts.source.display().to_string());
        }
        opts.fs.read_delay = std::env::var("PASSTHROUGHFS_TEST_READ_DELAY_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis);
        opts.fs.passthrough = opts.session.passthrough && !opts.session.writeback;
        opts.fs.writeback = opts.session.writeback;
        opts.fs.read_only = opts.mount.read_only;
        if opts.fs.remember_inodes > 0 {
            // LOOKUP of "." and "..": file handles outlive the kernel's inode cache.
            opts.session.extra_flags |= fuse_abi::FUSE_EXPORT_SUPPORT;
        }
        Ok(opts)
    }

    fn apply(&mut self, option: &str) -> Result<(), UsageError> {
        let (name, value) = match option.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (option, None),
        };
        let bad = || UsageError::BadValue {
            option: name.to_string(),
            value: value.unwrap_or("").to_string(),
        };
        let seconds = |v: Option<&str>| -> Result<Duration, UsageError> {
            let s: f64 = v.ok_or_else(bad)?.parse().map_err(|_| bad())?;
            Duration::try_from_secs_f64(s).map_err(|_| bad())
        };
        match (name, value) {
            ("allow_other", None) => self.mount.allow_other = true,
            ("default_permissions", None) => self.mount.default_permissions = true,
            ("nodefault_permissions", None) => self.no_default_permissions = true,
            ("ro", None) => self.mount.read_only = true,
            ("rw", None) => self.mount.read_only = false,
            ("fsname", Some(v)) => self.mount.fsname = Some(v.to_string()),
            ("subtype", Some(v)) => self.mount.subtype = Some(v.to_string()),
            ("entry_timeout", v) => self.fs.entry_timeout = seconds(v)?,
            ("attr_timeout", v) => self.fs.attr_timeout = seconds(v)?,
            ("writeback", None) => self.session.writeback = true,
            ("nopassthrough", None) => self.session.passthrough = false,
            ("huge_buffers", None) => self.session.huge_buffers = true,
            ("threads", Some(v)) => {
                let n: usize = v.parse().map_err(|_| bad())?;
                if n == 0 || n > 256 {
                    return Err(bad());
                }
                self.session.threads = n;
            }
            ("inode_file", Some(v)) if v.starts_with('/') => {
                self.fs.inode_file = Some(PathBuf::from(v));
            }
            ("remember_inodes", Some(v)) => {
                self.fs.remember_inodes = v.parse().map_err(|_| bad())?;
            }
            ("metrics", Some(v)) => self.metrics = Some(v.parse().map_err(|_| bad())?),
            ("max_read", Some(v)) => self.mount.max_read = Some(v.parse().map_err(|_| bad())?),
            (flag, None) if MOUNT_FLAGS.contains(&flag) => {
                match flag {
                    "noatime" => self.fs.atime = crate::fs::Atime::Noatime,
                    "strictatime" => self.fs.atime = crate::fs::Atime::Strictatime,
                    "atime" | "relatime" => self.fs.atime = crate::fs::Atime::Relatime,
                    "nodiratime" => self.fs.nodiratime = true,
                    _ => {}
                }
                self.mount.extra.push(flag.to_string())
            }
            _ => return Err(UsageError::Unexpected(format!("-o {option}"))),
        }
        Ok(())
    }
}

impl Options {
    /// What a server run as root (`root`) with `allow_other` must add: the kernel's permission
    /// checks (`default_permissions`), unless `nodefault_permissions`. Every request already
    /// runs as its caller, but a path the kernel has cached is walked without asking the
    /// server: without the kernel's checks, a user could open a file under another user's
    /// 0700 directory once its owner had looked it up. The kernel then checks mode bits and
    /// the source's POSIX ACLs (FUSE_POSIX_ACL, asked for with `default_permissions`).
    pub fn secure_defaults(&mut self, root: bool) {
        if root && self.mount.allow_other && !self.no_default_permissions {
            self.mount.default_permissions = true;
        }
        if self.mount.default_permissions {
            // The kernel's checks honour the source's POSIX ACLs (FUSE_POSIX_ACL: it reads
            // them as xattrs and caches them), and refreshes the mode a setfacl changes.
            // Asked for only with default_permissions, which it turns on.
            self.session.extra_flags |= fuse_abi::FUSE_POSIX_ACL;
        }
    }
}

impl Recovery {
    /// Takes a recovery option; false if `option` is not one.
    fn apply(&mut self, option: &str) -> Result<bool, UsageError> {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        let bad = || UsageError::BadValue { option: name.to_string(), value: value.to_string() };
        match name {
            "tag" if !value.is_empty() && value.len() <= 255 && !value.contains('/') => {
                self.tag = value.to_string()
            }
            "rescue_uid" => self.rescue_uid = Some(value.parse().map_err(|_| bad())?),
            "recovery_timeout" => {
                let s: f64 = value.parse().map_err(|_| bad())?;
                let d = Duration::try_from_secs_f64(s).map_err(|_| bad())?;
                self.recovery_timeout = (!d.is_zero()).then_some(d);
            }
            "keeper" if !value.is_empty() && value.split(':').all(|p| p.starts_with('/')) => {
                self.sockets = value.split(':').map(PathBuf::from).collect()
            }
            "nokeeper_start" if value.is_empty() => self.start_keeper = false,
            "nojournal" if value.is_empty() => self.journal = false,
            "handover" if value.is_empty() => self.handover = true,
            "timeout_policy" if value == "fail" || value == "abort" => {
                self.fail_on_timeout = value == "fail"
            }
            "nohandover" if value.is_empty() => self.allow_handover = false,
            "standby" if value.is_empty() => self.standby = true,
            "standby" if value == "auto" => self.standby_when_served = true,
            "tag" | "keeper" | "nokeeper_start" | "nojournal" | "handover" | "nohandover"
            | "timeout_policy" | "standby" => {
                return Err(bad());
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Mount flags passed through to mount(2) / fusermount3.
const MOUNT_FLAGS: &[&str] = &[
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "noatime",
    "atime",
    "nodiratime",
    "relatime",
    "strictatime",
    "sync",
    "async",
    "dirsync",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(s: &str) -> Result<Options, UsageError> {
        Options::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_libfuse_style_options() {
        let o =
            parse("-f -o allow_other,ro -o entry_timeout=2.5,threads=3,nopassthrough /src /mnt")
                .unwrap();
        assert!(o.foreground);
        assert!(o.mount.allow_other && o.mount.read_only);
        assert_eq!(o.fs.entry_timeout, Duration::from_millis(2500));
        assert_eq!(o.session.threads, 3);
        assert!(!o.session.passthrough && !o.fs.passthrough);
        assert_eq!(o.source, PathBuf::from("/src"));
        assert_eq!(o.mountpoint, PathBuf::from("/mnt"));
        assert_eq!(o.mount.fsname.as_deref(), Some("/src"));
    }

    #[test]
    fn recovery_options_need_a_tag() {
        let o = parse("-o tag=db,rescue_uid=7,recovery_timeout=2,keeper=/k.sock a b").unwrap();
        let r = o.recovery.unwrap();
        assert_eq!(r.tag, "db");
        assert_eq!(r.rescue_uid, Some(7));
        assert_eq!(r.recovery_timeout, Some(Duration::from_secs(2)));
        assert_eq!(r.sockets, [PathBuf::from("/k.sock")]);
        let two = parse("-o tag=db,keeper=/a.sock:/b.sock a b").unwrap();
        let sockets = two.recovery.unwrap().sockets;
        assert_eq!(sockets, [PathBuf::from("/a.sock"), PathBuf::from("/b.sock")]);
        assert!(parse("-o tag=db,keeper=/a.sock:rel.sock a b").is_err(), "relative socket path");
        assert!(r.start_keeper);
        assert!(parse("a b").unwrap().recovery.is_none(), "no tag, no keeper");
        assert_eq!(
            parse("-o rescue_uid=7 a b").unwrap_err(),
            UsageError::NeedsTag("rescue_uid=7".into())
        );
        assert!(matches!(parse("-o tag=a/b x y").unwrap_err(), UsageError::BadValue { .. }));
        assert!(matches!(
            parse("-o tag=x,rescue_uid=me a b").unwrap_err(),
            UsageError::BadValue { .. }
        ));
    }

    #[test]
    fn standby_needs_a_tag_and_excludes_handover() {
        assert!(parse("-o tag=db,standby a b").unwrap().recovery.unwrap().standby);
        assert!(!parse("-o tag=db a b").unwrap().recovery.unwrap().standby);
        assert_eq!(parse("-o standby a b").unwrap_err(), UsageError::NeedsTag("standby".into()));
        assert_eq!(
            parse("-o tag=db,standby,handover a b").unwrap_err(),
            UsageError::StandbyHandover
        );
        let auto = parse("-o tag=db,standby=auto a b").unwrap();
        assert!(auto.session.huge_buffers, "a standby's servers die fast");
        let auto = auto.recovery.unwrap();
        assert!(auto.standby_when_served && !auto.standby);
        assert!(!parse("-o tag=db a b").unwrap().session.huge_buffers);
        assert!(parse("-o huge_buffers a b").unwrap().session.huge_buffers);
        assert!(matches!(
            parse("-o tag=db,standby=1 a b").unwrap_err(),
            UsageError::BadValue { .. }
        ));
    }

    #[test]
    fn options_and_paths_come_in_any_order_and_o_may_be_glued() {
        // mount.fuse3's order: SOURCE MOUNTPOINT -o OPTIONS.
        let o = parse("/src /mnt -o tag=data,allow_other -oro -d").unwrap();
        assert_eq!(
            (o.source.as_path(), o.mountpoint.as_path()),
            (Path::new("/src"), Path::new("/mnt"))
        );
        assert!(o.mount.allow_other && o.mount.read_only && o.debug && o.foreground);
        assert_eq!(o.recovery.unwrap().tag, "data");
        let o = parse("-o allow_other /src -f /mnt").unwrap();
        assert!(o.mount.allow_other && o.foreground && !o.debug);
        assert_eq!(o.mountpoint, PathBuf::from("/mnt"));
    }

    #[test]
    fn mount_and_systemd_conventions_are_ignored_and_nothing_else() {
        let o = parse(
            "-o rw,tag=data,nofail,_netdev,defaults,auto,noauto,user,nouser,users \
             -o x-systemd.automount,x-systemd.requires=a.service,x-gvfs-hide,comment=x a b",
        )
        .unwrap();
        let plain = parse("-o tag=data a b").unwrap();
        assert_eq!(o.recovery, plain.recovery);
        let all = |o: &Options| format!("{:?} {:?} {:?}", o.mount, o.fs, o.session);
        assert_eq!(all(&o), all(&plain), "no conventional option reached the mount");
        assert_eq!(
            parse("-o nofails a b").unwrap_err(),
            UsageError::Unexpected("-o nofails".into())
        );
        assert_eq!(
            parse("-o comment a b").unwrap_err(),
            UsageError::Unexpected("-o comment".into())
        );
    }

    #[test]
    fn help_is_not_a_mount() {
        assert!(matches!(parse("--help").unwrap_err(), UsageError::Command(_)));
        assert_eq!(parse("--frob a b").unwrap_err(), UsageError::Unexpected("--frob".into()));
        assert_eq!(parse("").unwrap_err(), UsageError::Missing("SOURCE"));
    }

    #[test]
    fn the_man_page_and_completions_come_from_the_command_line_definition() {
        let mut man = Vec::new();
        man_page(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(man.starts_with(".ie") && man.contains(".TH passthroughfs 8"), "{man}");
        assert!(man.contains("tag=NAME") && man.contains("fuse.passthroughfs"), "{man}");
        assert!(!man.contains("generate"), "hidden flags stay out of the man page");
        let mut bash = Vec::new();
        completions(clap_complete::Shell::Bash, &mut bash);
        let bash = String::from_utf8(bash).unwrap();
        assert!(bash.contains("complete -F _passthroughfs") && bash.contains("-o"), "{bash}");
    }

    #[test]
    fn writeback_turns_kernel_passthrough_off() {
        let o = parse("-o writeback a b").unwrap();
        assert!(o.session.writeback && o.fs.writeback && !o.fs.passthrough);
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        assert_eq!(parse("a").unwrap_err(), UsageError::Missing("MOUNTPOINT"));
        assert_eq!(parse("a b c").unwrap_err(), UsageError::Unexpected("c".into()));
        assert!(matches!(parse("-o frobnicate a b").unwrap_err(), UsageError::Unexpected(_)));
        assert!(matches!(parse("-o threads=0 a b").unwrap_err(), UsageError::BadValue { .. }));
        assert!(matches!(parse("-o attr_timeout=x a b").unwrap_err(), UsageError::BadValue { .. }));
        assert_eq!(parse("a b -o").unwrap_err(), UsageError::MissingOptionList);
    }
}
