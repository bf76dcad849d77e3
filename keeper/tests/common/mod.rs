//! Test harness: a keeper process on a socket in a tempdir, helper processes, mounts; every
//! process is killed by pid and every mount force-unmounted in Drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use fuse_keeper::{ConnInfo, KeeperClient};

pub const BIN: &str = env!("CARGO_BIN_EXE_fuse-keeper");

/// How long a test waits for something that must happen (a state, a log line, a released
/// application): only a hang takes this long, however loaded the machine is.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The bound on an answer that must not wait for anything (a umount of a dead server's mount,
/// an orphaning noticed by a pidfd): far above what a loaded 2-core machine takes, far below
/// the hang it tells apart. Never a speed target: speed is measured in bench/.
pub const PROMPT: Duration = Duration::from_secs(10);

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL now (the zombie is reaped in Drop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `fuse-keeper serve` on `<tempdir>/keeper.sock`, stderr in `<tempdir>/keeper.log`.
pub struct Keeper {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// Connections kept open until the keeper is dropped (see [`Keeper::settled_fds`]).
    probes: std::cell::RefCell<Vec<KeeperClient>>,
}

impl Keeper {
    pub fn start() -> Keeper {
        Keeper::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Keeper {
        Keeper::spawn(&[], None, args)
    }

    /// `serve ARGS` run through `wrapper` (e.g. `prlimit --nofile=64:64 --`, which execs the
    /// keeper in its own process, so that the pid is still the keeper's).
    pub fn start_wrapped(wrapper: &[&str], args: &[&str]) -> Keeper {
        Keeper::spawn(wrapper, None, args)
    }

    /// `serve ARGS` as `uid` (and gid `uid`), in a directory that uid owns.
    pub fn start_as(uid: u32, args: &[&str]) -> Keeper {
        Keeper::spawn(&[], Some(uid), args)
    }

    fn spawn(wrapper: &[&str], uid: Option<u32>, args: &[&str]) -> Keeper {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("tempdir");
        // Other uids (the 65534 helper) must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        if let Some(uid) = uid {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
        }
        let socket = dir.path().join("keeper.sock");
        let log = dir.path().join("keeper.log");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(BIN);
                cmd
            }
            None => Command::new(BIN),
        };
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let child = cmd
            .arg("serve")
            .args(args)
            .env("FUSE_KEEPER_SOCKET", &socket)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn fuse-keeper serve");
        let keeper = Keeper { proc: Proc { child }, dir, socket, log, probes: Default::default() };
        let up = wait_until(PATIENCE, || KeeperClient::connect(&keeper.socket).is_ok());
        assert!(up, "keeper did not listen; log:\n{}", keeper.log_text());
        keeper
    }

    pub fn client(&self) -> KeeperClient {
        KeeperClient::connect(&self.socket).expect("connect to keeper")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn list(&self) -> Vec<ConnInfo> {
        self.client().list().expect("list")
    }

    pub fn entry(&self, tag: &str) -> Option<ConnInfo> {
        self.list().into_iter().find(|e| e.tag == tag)
    }

    /// `fuse-keeper ARGS` against this keeper.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env("FUSE_KEEPER_SOCKET", &self.socket).stdin(Stdio::null());
        cmd
    }

    /// The registrant helper ([`run_helper`]'s `register` role: REGISTER `tag` with `device`,
    /// and `device1` as index 1 if given, and a memfd holding `state:TAG`; then sleep until
    /// killed), started under `wrapper` (e.g. `setpriv --reuid=65534 ... --`, or none) and not
    /// waited for. `opts`: `--rescue-uid U`, `--conn-id N`, `--timeout-ms MS`,
    /// `--mountpoint PATH`, `--state-size BYTES`.
    pub fn registrant_unwaited_under(
        &self,
        wrapper: &[&str],
        tag: &str,
        opts: &[&str],
        device: OwnedFd,
        device1: Option<OwnedFd>,
    ) -> Proc {
        let mut args = vec![tag];
        args.extend_from_slice(opts);
        let mut cmd = self.helper(wrapper, "register", &args);
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        cmd.stdin(Stdio::from(OwnedFd::from(theirs))).stdout(Stdio::null()).stderr(Stdio::piped());
        let proc = Proc { child: cmd.spawn().expect("spawn the registrant helper") };
        let fds: Vec<OwnedFd> = std::iter::once(device).chain(device1).collect();
        hand_fds(&ours, &fds);
        proc
    }

    /// [`Keeper::registrant_unwaited_under`] with no wrapper, returning once the helper has
    /// registered.
    pub fn registrant(
        &self,
        tag: &str,
        opts: &[&str],
        device: OwnedFd,
        device1: Option<OwnedFd>,
    ) -> Proc {
        let mut proc = self.registrant_unwaited_under(&[], tag, opts, device, device1);
        let stderr = proc.child.stderr.take().unwrap();
        let line = first_line(stderr);
        assert!(
            line.starts_with("registered "),
            "the registrant helper failed: {line}\nkeeper log:\n{}",
            self.log_text()
        );
        proc
    }

    /// This test binary re-run as helper `role` with `args` ([`run_helper`]), against this
    /// keeper, under `wrapper` if any (e.g. `setpriv --reuid=65534 ... --`). Each test file that
    /// uses it declares the helper test: `#[test] #[ignore] fn keeper_test_helper() {
    /// common::run_helper() }`.
    pub fn helper(&self, wrapper: &[&str], role: &str, args: &[&str]) -> Command {
        let mut cmd = helper_command(wrapper, role, args);
        cmd.env("FUSE_KEEPER_SOCKET", &self.socket);
        cmd
    }

    /// The keeper's fd count once every connection closed before this call has been processed.
    ///
    /// Two LIST round trips on a new connection: the keeper handles every event one
    /// `epoll_wait` returned before it waits again, so once the second reply is here, the
    /// hangups queued before the first request are handled. The probe stays open (and counted)
    /// until the keeper is dropped, so that its own hangup never changes a later count.
    pub fn settled_fds(&self) -> usize {
        let mut probe = KeeperClient::connect(&self.socket).expect("connect to keeper");
        probe.list().expect("list");
        probe.list().expect("list");
        self.probes.borrow_mut().push(probe);
        fd_count(self.proc.pid())
    }

    /// Wait for `tag` to be listed in `state`.
    pub fn wait_state(&self, tag: &str, state: fuse_keeper::ConnState, within: Duration) -> bool {
        wait_until(within, || self.entry(tag).is_some_and(|e| e.state == state))
    }
}

fn first_line(stderr: ChildStderr) -> String {
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    if !line.starts_with("registered ") {
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        line.push_str(&rest);
    }
    line
}

/// Which role a re-executed test binary plays ([`run_helper`]).
pub const HELPER_ENV: &str = "FUSE_KEEPER_TEST_HELPER";
/// The helper's arguments, each hex-encoded, comma-separated.
const HELPER_ARGS_ENV: &str = "FUSE_KEEPER_TEST_HELPER_ARGS";

/// The current test binary run as helper `role` (its `keeper_test_helper` test alone), under
/// `wrapper` if any. The helpers used to be hidden subcommands of the production binary.
pub fn helper_command(wrapper: &[&str], role: &str, args: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(&exe);
            cmd
        }
        None => Command::new(&exe),
    };
    let hex: Vec<String> =
        args.iter().map(|a| a.bytes().map(|b| format!("{b:02x}")).collect::<String>()).collect();
    cmd.args(["--exact", "keeper_test_helper", "--ignored", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, role)
        .env(HELPER_ARGS_ENV, hex.join(","))
        .stdin(Stdio::null());
    cmd
}

/// Send `fds` over the helper's stdin socket (one message, one byte).
pub fn hand_fds(sock: &std::os::unix::net::UnixStream, fds: &[OwnedFd]) {
    let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    fuse_keeper::protocol::send_message(sock.as_fd(), b"d", &borrowed).expect("hand the fds over");
}

/// The body of each test binary's `keeper_test_helper` test: nothing unless [`HELPER_ENV`] is
/// set; else play that role and exit (never returns to the test harness).
///
/// - `register TAG [--rescue-uid U] [--conn-id N] [--timeout-ms MS] [--mountpoint PATH]
///   [--state-size BYTES]`: the devices arrive as SCM_RIGHTS on stdin (a socket); REGISTER
///   with the first, a memfd holding `state:TAG` (grown to BYTES if given); ADD_DEVICE the
///   second as index 1 if any (with `--liveness`, the last fd is a liveness page instead, sent
///   with LIVENESS after REGISTER); print `registered PID` on stderr; sleep until killed. On
///   failure print the error (and `errno=N`) on stderr and exit 1.
/// - `spawn SOCKET`: with umask 0 (as passthroughfs runs), start a keeper on demand
///   (`spawn_detached`) at SOCKET; exit 0 once it answers, else print the error and exit 1.
/// - `ls-runner`: for each line on stdin, run `fuse-keeper ls` (the keeper of
///   `$FUSE_KEEPER_SOCKET`) and print `ls CODE MILLISECONDS` on stderr. For tests whose own
///   process cannot start programs (it holds an fd on a stalled FUSE mount: exec would close
///   it, and that close waits for the FLUSH answer).
/// - `register-as TAG:UID...`: receive a device on stdin; for each TAG:UID in turn, on a thread
///   whose uids and gids are UID, connect and REGISTER TAG with the device and a fresh memfd,
///   printing `TAG ok` or `TAG errno=N` on stdout; then print `done` and sleep until killed
///   (holding every connection). Run in a user namespace, it registers as that namespace's
///   uids.
/// - `attach TAG`: print `pid=PID`, ATTACH, print `attached devices=N negotiation=...` (exit
///   0), `unknown` (exit 3) or `errno=N` and the error (exit 1), on stdout.
pub fn run_helper() {
    let Ok(role) = std::env::var(HELPER_ENV) else { return };
    let args: Vec<String> = std::env::var(HELPER_ARGS_ENV)
        .unwrap_or_default()
        .split(',')
        .filter(|a| !a.is_empty())
        .map(|a| {
            let bytes: Vec<u8> = (0..a.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&a[i..i + 2], 16).expect("hex"))
                .collect();
            String::from_utf8(bytes).expect("UTF-8 argument")
        })
        .collect();
    let code = match role.as_str() {
        "register" => helper_register(&args),
        "attach" => helper_attach(&args),
        "spawn" => helper_spawn(&args),
        "ls-runner" => helper_ls_runner(),
        "register-as" => helper_register_as(&args),
        "standby-watch" => helper_standby_watch(&args),
        other => {
            eprintln!("unknown helper role {other}");
            2
        }
    };
    std::process::exit(code)
}

/// `standby-watch TAG`: STANDBY for TAG, then print on stdout, a line each, `parked`, and
/// `watch PID` for each WATCH, `attached`, `ended`; exit 0 after the last two.
fn helper_standby_watch(args: &[String]) -> i32 {
    use fuse_keeper::client::{StandbyEvent, StandbyReply};
    use std::io::Write;
    let mut client = KeeperClient::connect(&fuse_keeper::socket_path()).expect("connect");
    let mut out = std::io::stdout();
    // On a line of its own: libtest has printed "test keeper_test_helper ... " without one.
    let _ = writeln!(out);
    match client.standby(&args[0]) {
        Ok(StandbyReply::Parked) => {}
        other => {
            let _ = writeln!(out, "not parked: {other:?}");
            return 1;
        }
    }
    let _ = writeln!(out, "parked");
    loop {
        let line = match client.standby_next() {
            Ok(StandbyEvent::Watch { server_pid, .. }) => format!("watch {server_pid}"),
            Ok(StandbyEvent::Attached(_)) => "attached".into(),
            Ok(StandbyEvent::Ended) => "ended".into(),
            Err(e) => format!("error {e}"),
        };
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        if !line.starts_with("watch ") {
            return 0;
        }
    }
}

fn helper_spawn(args: &[String]) -> i32 {
    rustix::process::umask(rustix::fs::Mode::empty());
    match fuse_keeper::spawn_detached(Path::new(BIN), Path::new(&args[0])) {
        Ok(()) => 0,
        Err(e) => {
            println!("\nspawn failed: {e}");
            1
        }
    }
}

fn helper_ls_runner() -> i32 {
    for line in std::io::stdin().lines() {
        if line.is_err() {
            break;
        }
        let started = Instant::now();
        let code = Command::new(BIN)
            .arg("ls")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map_or(-1, |s| s.code().unwrap_or(-1));
        eprintln!("ls {code} {}", started.elapsed().as_millis());
    }
    0
}

fn helper_register_as(args: &[String]) -> i32 {
    let stdin = std::io::stdin();
    let received = fuse_keeper::protocol::recv_message(stdin.as_fd(), 16, 1)
        .expect("receive the device")
        .expect("the device");
    let device = received.fds.into_iter().next().expect("a device");
    // On a line of its own: libtest has printed "test keeper_test_helper ... " without one.
    println!();
    let mut held = Vec::new();
    for arg in args {
        let (tag, uid) = arg.split_once(':').expect("TAG:UID");
        let uid: u32 = uid.parse().expect("a uid");
        let device = dup(&device);
        let tag_owned = tag.to_owned();
        let result = std::thread::spawn(move || {
            let id = rustix::process::Gid::from_raw(uid);
            rustix::thread::set_thread_res_gid(id, id, id).map_err(std::io::Error::from)?;
            let id = rustix::process::Uid::from_raw(uid);
            rustix::thread::set_thread_res_uid(id, id, id).map_err(std::io::Error::from)?;
            let mut client = KeeperClient::connect(&fuse_keeper::socket_path())?;
            let reg = fuse_keeper::Registration {
                tag: tag_owned,
                rescue_uid: uid,
                mountpoint: "/nonexistent".into(),
                conn_id: 0,
                recovery_timeout: None,
                negotiation: Vec::new(),
                fail_on_timeout: false,
            };
            client.register(&reg, device.as_fd(), memfd(b"state").as_fd())?;
            Ok::<_, fuse_keeper::KeeperError>(client)
        })
        .join()
        .expect("the registering thread");
        match result {
            Ok(client) => {
                println!("{tag} ok");
                held.push(client);
            }
            Err(e) => println!("{tag} errno={}", e.errno().unwrap_or(0)),
        }
    }
    println!("done");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn helper_attach(args: &[String]) -> i32 {
    // On a line of its own: libtest has printed "test keeper_test_helper ... " without one.
    println!("\npid={}", std::process::id());
    let attached =
        KeeperClient::connect(&fuse_keeper::socket_path()).and_then(|mut c| c.attach(&args[0]));
    match attached {
        Ok(Some(a)) => {
            println!("attached devices={} negotiation={:?}", a.devices.len(), a.negotiation);
            0
        }
        Ok(None) => {
            println!("unknown");
            3
        }
        Err(e) => {
            println!("errno={}", e.errno().unwrap_or(0));
            println!("{e}");
            1
        }
    }
}

fn helper_register(args: &[String]) -> i32 {
    let (tag, opts) = args.split_first().expect("a tag");
    let mut reg = fuse_keeper::Registration {
        tag: tag.clone(),
        rescue_uid: rustix::process::getuid().as_raw(),
        mountpoint: "/nonexistent".into(),
        conn_id: 0,
        recovery_timeout: None,
        negotiation: format!("negotiation:{tag}").into_bytes(),
        fail_on_timeout: false,
    };
    let mut state_size = None;
    let mut liveness = false;
    let mut it = opts.iter();
    while let Some(opt) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{opt} needs a value")).clone();
        match opt.as_str() {
            "--rescue-uid" => reg.rescue_uid = value().parse().expect("uid"),
            "--conn-id" => reg.conn_id = value().parse().expect("conn id"),
            "--timeout-ms" => {
                reg.recovery_timeout =
                    Some(Duration::from_millis(value().parse().expect("milliseconds")))
            }
            "--mountpoint" => reg.mountpoint = value().into(),
            "--state-size" => state_size = Some(value().parse::<u64>().expect("bytes")),
            "--liveness" => liveness = true,
            other => panic!("unknown option {other}"),
        }
    }
    let stdin = std::io::stdin();
    let received = fuse_keeper::protocol::recv_message(stdin.as_fd(), 16, 2)
        .expect("receive the devices")
        .expect("the devices");
    let mut devices = received.fds.into_iter();
    let device = devices.next().expect("a device");
    let page = if liveness { Some(devices.next_back().expect("a liveness page")) } else { None };
    let state = memfd(format!("state:{tag}").as_bytes());
    if let Some(size) = state_size {
        rustix::fs::ftruncate(&state, size).expect("grow the state memfd");
    }
    let result = KeeperClient::connect(&fuse_keeper::socket_path()).and_then(|mut client| {
        client.register(&reg, device.as_fd(), state.as_fd())?;
        if let Some(device1) = devices.next() {
            client.add_device(&reg.tag, 1, device1.as_fd())?;
        }
        if let Some(page) = &page {
            client.liveness(&reg.tag, page.as_fd())?;
        }
        Ok(client)
    });
    match result {
        Ok(_client) => {
            eprintln!("registered {}", std::process::id());
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Err(e) => {
            eprintln!("register failed: errno={} {e}", e.errno().unwrap_or(0));
            1
        }
    }
}

/// A registration of `tag` by this process: rescue uid 0, a mountpoint that does not exist,
/// no connection number, no timeout.
pub fn registration(tag: &str) -> fuse_keeper::Registration {
    fuse_keeper::Registration {
        tag: tag.into(),
        rescue_uid: 0,
        mountpoint: "/nonexistent/keeper-test".into(),
        conn_id: 0,
        recovery_timeout: None,
        negotiation: b"init".to_vec(),
        fail_on_timeout: false,
    }
}

/// Poll `f` every millisecond until it holds or `within` has passed.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A temporary directory other uids can reach (mode 0755): for sockets and files uid 65534
/// must get to.
pub fn reachable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// SIGTERMs, when dropped, the keeper serving the socket at its path (found by SO_PEERCRED, so
/// a keeper started indirectly is stopped even if the test failed before it learnt the pid),
/// and waits until it has removed its socket.
pub struct StopKeeperAt(pub PathBuf);

impl Drop for StopKeeperAt {
    fn drop(&mut self) {
        if let Ok(client) = KeeperClient::connect(&self.0)
            && let Ok(cred) = rustix::net::sockopt::socket_peercred(client.as_fd())
        {
            let _ = rustix::process::kill_process(cred.pid, rustix::process::Signal::TERM);
            drop(client);
            let gone = wait_until(PATIENCE, || !self.0.exists());
            assert!(gone || std::thread::panicking(), "the stopped keeper did not exit");
        }
    }
}

/// A fresh `/dev/fuse` fd (not mounted).
pub fn open_fuse() -> OwnedFd {
    fuse_transport::open_device().expect("open /dev/fuse")
}

/// A memfd holding `content`, sealed against shrinking as a state store is (the keeper
/// refuses a state fd that is not).
pub fn memfd(content: &[u8]) -> OwnedFd {
    let flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
    let fd = rustix::fs::memfd_create("keeper-test", flags).unwrap();
    rustix::io::write(&fd, content).unwrap();
    rustix::fs::fcntl_add_seals(&fd, rustix::fs::SealFlags::SHRINK).unwrap();
    fd
}

/// A memfd holding `content`, not sealed.
pub fn unsealed_memfd(content: &[u8]) -> OwnedFd {
    let fd = rustix::fs::memfd_create("keeper-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::io::write(&fd, content).unwrap();
    fd
}

/// The whole content of a file fd, read from offset 0.
pub fn read_all(fd: impl AsFd) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::io::pread(fd, &mut buf, 0).unwrap();
    buf.truncate(n);
    buf
}

pub fn dup(fd: impl AsFd) -> OwnedFd {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).unwrap()
}

/// A FUSE mount on a tempdir whose INIT is never answered (so any access blocks until the
/// connection is aborted); force-unmounted in Drop.
pub struct Mount {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub conn_id: u32,
}

impl Mount {
    /// Mount (needs root): returns the mount and its device fd.
    pub fn new() -> (Mount, OwnedFd) {
        assert!(rustix::process::geteuid().is_root(), "mount tests need root");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let dev = open_fuse();
        let opts = fuse_transport::MountOptions {
            fsname: Some("keeper-test".into()),
            ..Default::default()
        };
        fuse_transport::mount_with_fd(dev.as_fd(), &path, &opts).expect("mount");
        let conn_id = fuse_transport::connection_id(&path).expect("connection id");
        (Mount { dir, path, conn_id }, dev)
    }

    pub fn is_mounted(&self) -> bool {
        fuse_transport::is_fuse_mount(&self.path)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = fuse_transport::force_unmount(&self.path);
    }
}

/// `stat` the path on another thread; the result arrives on the channel.
pub fn stat_in_thread(path: &Path) -> std::sync::mpsc::Receiver<std::io::Result<()>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::metadata(&path).map(drop));
    });
    rx
}

/// Number of open fds of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// A raw SEQPACKET connection to the keeper at `path`, with send and receive timeouts of
/// [`PATIENCE`] (for tests that write bytes the client library would never send).
pub fn connect_raw(path: &Path) -> std::io::Result<OwnedFd> {
    let sock = fuse_keeper::client::connect_socket(path)?;
    let timeout = Some(PATIENCE);
    for dir in [rustix::net::sockopt::Timeout::Recv, rustix::net::sockopt::Timeout::Send] {
        rustix::net::sockopt::set_socket_timeout(&sock, dir, timeout)?;
    }
    Ok(sock)
}
