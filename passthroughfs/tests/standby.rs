//! Hot standbys (`-o standby`) on real mounts with real processes: a second server waits at
//! the keeper for the serving one to die and takes the connection over at once; a second
//! standby, another uid and a clean unmount get what docs/keeper-protocol.md (STANDBY) says.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Keeper, Mounted, PATIENCE};
use rustix::process::{Pid, Signal, kill_process};

const OPTIONS: &str = "tag=hot,nokeeper_start";

/// A keeper, a mount, its serving process and its standby; every process started is killed by
/// pid and reaped when dropped, and the mount is aborted and detached ([`Mounted`]'s drop).
struct Hot {
    m: Mounted,
    keeper: Keeper,
    standby: Option<Child>,
    /// Processes that no longer serve (killed servers, refused standbys), reaped at the end.
    others: Vec<Child>,
    logs: u32,
    /// Options every process of this mount gets after [`OPTIONS`].
    common: String,
}

impl Hot {
    fn new() -> Hot {
        Hot::with_options("")
    }

    /// Every process started with `,common` after [`OPTIONS`] too.
    fn with_options(common: &str) -> Hot {
        let m = Mounted::dirs();
        let keeper = Keeper::start(m.dir.path());
        Hot { m, keeper, standby: None, others: Vec::new(), logs: 0, common: common.into() }
    }

    /// `passthroughfs -f -o OPTIONS[,extra]`, logging at info to a file of its own.
    fn spawn(&mut self, extra: &str, uid: Option<u32>) -> (Child, PathBuf) {
        use std::os::unix::process::CommandExt;
        self.logs += 1;
        let log = self.m.dir.path().join(format!("server-{}.log", self.logs));
        let file = fs::File::create(&log).unwrap();
        let mut cmd =
            self.m.server_command(&self.keeper.socket, &format!("{OPTIONS}{}{extra}", self.common));
        cmd.env("RUST_LOG", "info").stderr(file).stdout(Stdio::null());
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        (cmd.spawn().unwrap(), log)
    }

    /// Mounts fresh and waits until the keeper lists the server.
    fn start_server(&mut self) {
        let (child, _) = self.spawn("", None);
        self.m.server = Some(child);
        self.m.wait_mounted();
        self.keeper.wait_serving(self.m.pid());
    }

    /// Starts a standby and waits until the keeper lists it as parked.
    fn start_standby(&mut self) -> PathBuf {
        let (child, log) = self.spawn(",standby", None);
        let pid = child.id();
        self.standby = Some(child);
        self.wait_field("standby_pid", &pid.to_string());
        log
    }

    /// Waits until the one connection's `field` in `ls --json` is `value`.
    fn wait_field(&mut self, field: &str, value: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if try_ls_field(&self.keeper, field).as_deref() == Some(value) {
                return;
            }
            if let Some(standby) = self.standby.as_mut()
                && let Some(status) = standby.try_wait().unwrap()
            {
                panic!("the standby exited ({status}) before {field} was {value}");
            }
            assert!(
                Instant::now() < deadline,
                "{field} never became {value}: {}",
                self.keeper.ls_json()
            );
            sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILLs the serving process; the parked standby becomes the server (listed so, and
    /// saying so in its log); the killed one is reaped.
    fn kill_server_and_take_over(&mut self, standby_log: &PathBuf) {
        let dead = self.m.server.take().expect("a server");
        let standby = self.standby.take().expect("a standby");
        let pid = standby.id();
        // Held by the harness throughout: a failed wait below still kills and reaps both.
        self.m.server = Some(standby);
        // The standby watches the server's liveness page (WATCH: the server sent LIVENESS)...
        let server = format!("server={}", dead.id());
        wait_log_line(standby_log, &["watching the server's liveness page", &server]);
        kill_process(Pid::from_raw(dead.id() as i32).unwrap(), Signal::KILL).unwrap();
        self.others.push(dead);
        self.others.last_mut().unwrap().wait().unwrap();
        self.wait_field("server_pid", &pid.to_string());
        wait_log(standby_log, "attached to an orphaned connection");
        // ...and the kernel marked every thread of it died there: the standby said so (DIED),
        // before the pidfd fired or, on a busy machine, after it (the keeper then ignores it).
        wait_log_line(standby_log, &["every thread of the server died", &server]);
        assert_eq!(ls_field(&self.keeper, "standby_pid"), "null");
        assert_eq!(ls_field(&self.keeper, "state"), "\"serving\"");
    }
}

impl Drop for Hot {
    fn drop(&mut self) {
        for mut child in self.standby.take().into_iter().chain(self.others.drain(..)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One field of the one connection in `fuse-keeper ls --json`.
fn ls_field(keeper: &Keeper, field: &str) -> String {
    try_ls_field(keeper, field).unwrap_or_else(|| panic!("no {field} in {}", keeper.ls_json()))
}

/// [`ls_field`], or `None` while the keeper lists no connection (a keeper just restarted).
fn try_ls_field(keeper: &Keeper, field: &str) -> Option<String> {
    let ls = keeper.ls_json();
    let key = format!("\"{field}\":");
    let at = ls.find(&key)? + key.len();
    Some(ls[at..].split([',', '}']).next()?.to_owned())
}

/// Waits until a line of the log at `path` contains every one of `parts`.
fn wait_log_line(path: &PathBuf, parts: &[&str]) {
    wait_log_where(path, &format!("a line with {parts:?}"), |text| {
        text.lines().any(|line| parts.iter().all(|p| line.contains(p)))
    });
}

/// Waits until the log at `path` contains `what`.
fn wait_log(path: &PathBuf, what: &str) -> String {
    wait_log_where(path, &format!("{what:?}"), |text| text.contains(what))
}

/// Waits until the log at `path` is as `said` wants it (`what`, for the failure message).
fn wait_log_where(path: &PathBuf, what: &str, said: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if said(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{} never said {what}: {text}", path.display());
        sleep(Duration::from_millis(5));
    }
}

/// Waits for `child` to exit by itself.
fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "pid {} did not exit", child.id());
        sleep(Duration::from_millis(10));
    }
}

const BLOCK: usize = 4096;
const BLOCKS: u64 = 64;

/// The content block `i` gets at write number `n`.
fn block(i: u64, n: u64) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    for (j, byte) in b.iter_mut().enumerate() {
        *byte = (i.wrapping_mul(31) ^ n.wrapping_mul(7) ^ j as u64) as u8;
    }
    b
}

/// SIGKILLs of the serving process with a standby parked, four times: an application that
/// holds a file open and writes and reads it back in a loop throughout (through the server:
/// `nopassthrough`, so that every read and write is a request) sees no error and
/// always reads what it wrote; each standby serves (the keeper lists its pid, its log says it
/// attached); the file holds what the application last wrote.
#[test]
fn a_parked_standby_takes_over_each_killed_server_with_no_application_error() {
    let mut h = Hot::with_options(",nopassthrough");
    h.start_server();
    let path = h.m.mnt("data");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let app = {
        let (stop, ops) = (stop.clone(), ops.clone());
        std::thread::spawn(move || {
            let mut errors = Vec::new();
            let mut last = vec![u64::MAX; BLOCKS as usize];
            let mut n = 0u64;
            let mut buf = vec![0u8; BLOCK];
            while !stop.load(Ordering::SeqCst) {
                let i = n % BLOCKS;
                let offset = i * BLOCK as u64;
                if let Err(e) = file.write_all_at(&block(i, n), offset) {
                    errors.push(format!("write {n}: {e}"));
                }
                last[i as usize] = n;
                match file.read_exact_at(&mut buf, offset) {
                    Ok(()) if buf == block(i, n) => {}
                    Ok(()) => errors.push(format!("read {n}: not what was written")),
                    Err(e) => errors.push(format!("read {n}: {e}")),
                }
                n += 1;
                ops.store(n, Ordering::SeqCst);
            }
            (errors, last)
        })
    };
    let wait_ops = |more: u64| {
        let target = ops.load(Ordering::SeqCst) + more;
        let deadline = Instant::now() + PATIENCE;
        while ops.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "the application made no progress");
            sleep(Duration::from_millis(1));
        }
    };
    wait_ops(100);
    for cycle in 1..=4 {
        let log = h.start_standby();
        wait_ops(100);
        h.kill_server_and_take_over(&log);
        wait_ops(100);
        assert_eq!(ls_field(&h.keeper, "recoveries"), cycle.to_string());
    }
    assert!(h.keeper.log().contains("handed over to the standby"), "{}", h.keeper.log());
    stop.store(true, Ordering::SeqCst);
    let (errors, last) = app.join().unwrap();
    assert!(errors.is_empty(), "the application saw errors: {errors:?}");
    let data = fs::read(h.m.src("data")).unwrap();
    assert_eq!(data.len(), BLOCK * BLOCKS as usize);
    for (i, &n) in last.iter().enumerate() {
        let at = i * BLOCK;
        assert!(data[at..at + BLOCK] == block(i as u64, n), "block {i} is not write {n}");
    }
}

/// A second standby for the same connection is refused (EBUSY) and exits 1 saying so; the
/// first stays parked. A parked standby that dies is forgotten, and the next one parks.
#[test]
fn a_second_standby_gets_ebusy_and_a_dead_one_is_dropped() {
    let mut h = Hot::new();
    h.start_server();
    h.start_standby();
    let first = h.standby.as_ref().unwrap().id();
    let (second, log) = h.spawn(",standby", None);
    h.others.push(second);
    let status = wait_exit(h.others.last_mut().unwrap());
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("Device or resource busy"), "{text}");
    assert!(text.contains(&format!("a standby (pid {first}) is parked")), "{text}");
    assert_eq!(ls_field(&h.keeper, "standby_pid"), first.to_string());

    let standby = h.standby.as_mut().unwrap();
    standby.kill().unwrap();
    standby.wait().unwrap();
    h.standby = None;
    h.wait_field("standby_pid", "null");
    h.start_standby();
}

/// uid 65534 asking STANDBY for root's tag is refused (EACCES), audited in the keeper's log,
/// and parks nothing.
#[test]
fn another_uid_may_not_stand_by() {
    let mut h = Hot::new();
    h.start_server();
    let (nobody, log) = h.spawn(",standby", Some(65534));
    let pid = nobody.id();
    h.others.push(nobody);
    let status = wait_exit(h.others.last_mut().unwrap());
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("Permission denied"), "{text}");
    let audit = format!("refused attach of tag hot by pid {pid} uid 65534");
    assert!(h.keeper.log().contains(&audit), "{}", h.keeper.log());
    assert_eq!(ls_field(&h.keeper, "standby_pid"), "null");
    assert_eq!(ls_field(&h.keeper, "server_pid"), h.m.pid().to_string());
}

/// A clean unmount of the served mount answers the parked standby, which exits 0 saying
/// there is nothing to take over; the mount is gone and nothing is left at the keeper.
#[test]
fn a_clean_unmount_dismisses_the_standby() {
    let mut h = Hot::new();
    h.start_server();
    let log = h.start_standby();
    h.m.signal(Signal::TERM);
    let status = h.m.wait_exit(PATIENCE).expect("the server exits after SIGTERM");
    assert!(status.success(), "{status}");
    let status = wait_exit(h.standby.as_mut().unwrap());
    let text = wait_log(&log, "nothing to take over");
    assert!(status.success(), "{status}: {text}");
    assert!(!h.m.is_mounted());
    assert!(h.keeper.ls_json().contains("\"connections\":[]"), "{}", h.keeper.ls_json());
}

/// A planned handover (`-o handover`) while a standby is parked: the old server exits 0, the
/// new one serves, the standby stays parked, and then stands by for the new server: killed,
/// it is taken over by the standby.
#[test]
fn a_handover_leaves_the_standby_parked_for_the_new_server() {
    let mut h = Hot::new();
    h.start_server();
    fs::write(h.m.src("f"), b"kept").unwrap();
    let log = h.start_standby();
    let standby = h.standby.as_ref().unwrap().id().to_string();
    let (new, _) = h.spawn(",handover", None);
    let new_pid = new.id();
    let old = h.m.server.replace(new).unwrap();
    h.others.push(old);
    let status = wait_exit(h.others.last_mut().unwrap());
    assert!(status.success(), "the old server exits 0 after the handover");
    h.wait_field("server_pid", &new_pid.to_string());
    assert_eq!(ls_field(&h.keeper, "handovers"), "1");
    assert_eq!(ls_field(&h.keeper, "standby_pid"), standby);
    h.kill_server_and_take_over(&log);
    assert_eq!(fs::read(h.m.mnt("f")).unwrap(), b"kept");
}

/// The keeper dies while a standby is parked (the server lives): the standby connects to the
/// restarted keeper and parks again once the server has registered with it again, and takes
/// over when the server is then killed.
#[test]
fn a_standby_parks_again_at_a_restarted_keeper() {
    let mut h = Hot::new();
    h.start_server();
    fs::write(h.m.src("f"), b"kept").unwrap();
    let log = h.start_standby();
    let standby = h.standby.as_ref().unwrap().id().to_string();
    kill_process(Pid::from_raw(h.keeper.pid() as i32).unwrap(), Signal::KILL).unwrap();
    let _ = fs::remove_file(&h.keeper.socket);
    h.keeper = Keeper::start(h.m.dir.path());
    h.wait_field("standby_pid", &standby);
    assert_eq!(ls_field(&h.keeper, "server_pid"), h.m.pid().to_string());
    wait_log(&log, "lost the keeper while standing by");
    h.kill_server_and_take_over(&log);
    assert_eq!(fs::read(h.m.mnt("f")).unwrap(), b"kept");
}

/// `standby=auto` on the one command line of two supervised processes: the first mounts (no
/// server serves the tag), the second stands by for it; killed, the serving one is taken over
/// and its restart (the same command line) stands by in turn.
#[test]
fn with_standby_auto_the_same_command_line_serves_or_stands_by() {
    let mut h = Hot::with_options(",standby=auto");
    h.start_server();
    for _ in 0..2 {
        let (child, log) = h.spawn("", None);
        let pid = child.id();
        h.standby = Some(child);
        h.wait_field("standby_pid", &pid.to_string());
        wait_log(&log, "a live server serves the tag: standing by for it");
        h.kill_server_and_take_over(&log);
    }
    assert_eq!(ls_field(&h.keeper, "recoveries"), "2");
}

/// What a standby tells systemd (`$NOTIFY_SOCKET`): `READY=1` with `STATUS=standby` once
/// parked, and `READY=1`, `MAINPID=` itself, `STATUS=attached` once it has taken over.
#[test]
fn a_standby_tells_systemd_it_stands_by_then_that_it_attached() {
    use std::os::unix::net::UnixDatagram;
    let mut h = Hot::new();
    h.start_server();
    let path = h.m.dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&path).unwrap();
    manager.set_read_timeout(Some(PATIENCE)).unwrap();
    let next = || {
        let mut buf = vec![0u8; 4096];
        let n = manager.recv(&mut buf).expect("a notification");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    };
    h.logs += 1;
    let log = h.m.dir.path().join("notified-standby.log");
    let child =
        h.m.server_command(&h.keeper.socket, &format!("{OPTIONS},standby"))
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", &path)
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
    let pid = child.id();
    h.standby = Some(child);
    assert_eq!(next(), format!("READY=1\nMAINPID={pid}\nSTATUS=standby"));
    assert_eq!(ls_field(&h.keeper, "standby_pid"), pid.to_string(), "parked before READY=1");
    h.kill_server_and_take_over(&log);
    assert_eq!(next(), format!("READY=1\nMAINPID={pid}\nSTATUS=attached"));
}
