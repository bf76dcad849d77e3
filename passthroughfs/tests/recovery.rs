//! Recovery on real mounts with real SIGKILLs: a keeper holds the connection, the server is
//! killed and restarted with the same command line, and applications see no error.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Keeper, Mounted, within, workspace_bin};
use rustix::process::Signal;

/// A recoverable mount: keeper, source, mountpoint, and the current server.
struct Recoverable {
    m: Mounted,
    keeper: Keeper,
    options: String,
}

impl Recoverable {
    fn new(options: &str) -> Recoverable {
        Recoverable::with_keeper(options, &[])
    }

    /// With the keeper started as `fuse-keeper serve KEEPER_ARGS`.
    fn with_keeper(options: &str, keeper_args: &[&str]) -> Recoverable {
        let m = Mounted::dirs();
        let keeper = Keeper::start_with(m.dir.path(), keeper_args);
        Recoverable { m, keeper, options: format!("tag=test,nokeeper_start{options}") }
    }

    fn command(&self) -> Command {
        self.m.server_command(&self.keeper.socket, &self.options)
    }

    /// Starts a server (fresh or re-attaching) and waits until it serves.
    fn start(&mut self, env: &[(&str, &str)]) {
        let mut cmd = self.command();
        cmd.envs(env.iter().copied());
        self.m.server = Some(cmd.spawn().unwrap());
        self.m.wait_mounted();
        self.wait_serving();
    }

    /// Waits until the keeper lists the tag as served by the current server.
    fn wait_serving(&mut self) {
        let pid = self.m.pid();
        let deadline = Instant::now() + common::PATIENCE;
        loop {
            let ls = self.keeper.ls_json();
            if ls.contains(&format!("\"server_pid\":{pid}"))
                || ls.contains(&format!("\"server_pid\": {pid}"))
            {
                return;
            }
            if let Some(status) = self.m.server.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited ({status}); keeper log:\n{}", self.keeper.log());
            }
            assert!(Instant::now() < deadline, "server {pid} never registered: {ls}");
            sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        self.m.signal(Signal::KILL);
        self.m.wait_exit(common::PATIENCE).expect("killed server reaped");
    }
}

fn data(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

fn in_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

#[test]
fn reads_in_flight_and_requests_during_the_outage_complete_after_a_restart() {
    let mut r = Recoverable::new(",nopassthrough,threads=2");
    let content = data(3 << 20, 1);
    fs::write(r.m.src("big"), &content).unwrap();
    fs::write(r.m.src("other"), &content[..1 << 20]).unwrap();
    fs::write(r.m.src("unvisited"), b"12345").unwrap();
    r.start(&[("PASSTHROUGHFS_TEST_READ_DELAY_MS", "1500")]);

    // Two reads, one per worker (so one is on the cloned fd), both inside the server.
    let reads: Vec<_> = ["big", "other"]
        .into_iter()
        .map(|name| {
            let path = r.m.mnt(name);
            in_thread(move || fs::read(path))
        })
        .collect();
    r.m.wait_reads_inside(2);
    r.kill();
    // While no server runs: a stat of a name the kernel has not cached waits instead of
    // failing; a statfs is answered by the keeper, standing in (orphaned.rs in the keeper).
    let stat = {
        let path = r.m.mnt("unvisited");
        in_thread(move || fs::metadata(path).map(|m| m.len()))
    };
    let statfs = {
        let path = r.m.mountpoint.clone();
        in_thread(move || rustix::fs::statvfs(&path).map(|s| s.f_bsize))
    };
    let bsize = statfs.recv_timeout(common::PROMPT).expect("statfs answered by the keeper");
    assert!(bsize.unwrap() > 0);
    sleep(Duration::from_millis(300));
    assert!(stat.try_recv().is_err(), "stat returned while no server ran");
    r.start(&[]);
    for (rx, want) in reads.into_iter().zip([&content[..], &content[..1 << 20]]) {
        let got =
            rx.recv_timeout(common::PATIENCE).expect("read completed").expect("read succeeded");
        assert!(got == want, "read returned wrong data ({} bytes)", got.len());
    }
    assert_eq!(stat.recv_timeout(common::PATIENCE).unwrap().unwrap(), 5);
    assert!(r.keeper.log().contains("attach"), "the second server attached: {}", r.keeper.log());
}

#[test]
fn open_files_and_directory_streams_survive_three_crashes() {
    for mode in ["", ",nopassthrough"] {
        let mut r = Recoverable::new(mode);
        for i in 0..50 {
            fs::write(r.m.src(&format!("entry{i:02}")), b"x").unwrap();
        }
        r.start(&[]);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(r.m.mnt("held"))
            .unwrap();
        let mut dir = rustix::fs::Dir::read_from(fs::File::open(&r.m.mountpoint).unwrap()).unwrap();
        let mut listed = Vec::new();
        let mut expected = Vec::new();
        for round in 0..3u8 {
            let chunk = data(100_000, u32::from(round));
            file.write_all(&chunk).unwrap();
            expected.extend_from_slice(&chunk);
            for _ in 0..10 {
                if let Some(entry) = dir.read() {
                    listed.push(entry.unwrap().file_name().to_string_lossy().into_owned());
                }
            }
            r.kill();
            r.start(&[]);
            let mut back = Vec::new();
            file.seek(SeekFrom::Start(0)).unwrap();
            file.read_to_end(&mut back).unwrap();
            assert!(back == expected, "{mode}: contents after crash {round} differ");
        }
        while let Some(entry) = dir.read() {
            listed.push(entry.unwrap().file_name().to_string_lossy().into_owned());
        }
        listed.sort();
        listed.dedup();
        assert_eq!(
            listed.len(),
            50 + 3,
            "{mode}: every entry listed once (. .. held entry*): {listed:?}"
        );
        file.sync_all().unwrap();
        assert_eq!(fs::read(r.m.src("held")).unwrap(), expected);
    }
}

#[test]
fn only_the_rescue_uid_may_attach() {
    let mut r = Recoverable::new(",rescue_uid=0");
    r.start(&[]);
    r.kill();
    // nobody runs the same command line: refused, logged, and the mount still waits.
    let out = r.command().uid(65534).gid(65534).output().unwrap();
    assert!(!out.status.success(), "an attach by uid 65534 succeeded");
    let log = r.keeper.log();
    assert!(
        log.contains("refused") && log.contains("65534"),
        "no audit line for the refused attach:\n{log}"
    );
    assert!(r.m.is_mounted());
    // The rescue uid's attach then succeeds.
    r.start(&[]);
    fs::write(r.m.mnt("after"), b"ok").unwrap();
    assert_eq!(fs::read(r.m.src("after")).unwrap(), b"ok");
}

#[test]
fn recovery_timeout_fails_waiting_applications_and_removes_the_mount() {
    let mut r = Recoverable::new(",recovery_timeout=2");
    r.start(&[]);
    fs::write(r.m.mnt("f"), b"x").unwrap();
    // Taken before the kill: the keeper's timeout starts once it sees the death, after this.
    let started = Instant::now();
    r.kill();
    let path = r.m.mnt("f");
    let err = within(common::PATIENCE, "stat on an orphaned mount", move || {
        fs::metadata(path).unwrap_err()
    });
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "failed before the timeout: {waited:?}");
    assert!(
        matches!(err.raw_os_error(), Some(libc::ENOTCONN) | Some(libc::ECONNABORTED)),
        "unexpected error {err}"
    );
    let deadline = Instant::now() + common::PATIENCE;
    while r.m.is_mounted() {
        assert!(Instant::now() < deadline, "the mount is still there");
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn with_the_fail_policy_waiting_applications_get_eio_the_mount_stays_and_a_new_server_serves() {
    // The deadline is long enough that "at once" below (under half of it) holds on a loaded
    // machine and still tells a request failed at once from one that waited a deadline.
    const DEADLINE: Duration = Duration::from_secs(4);
    let mut r = Recoverable::new(",recovery_timeout=4,timeout_policy=fail,nopassthrough");
    r.start(&[]);
    fs::write(r.m.mnt("f"), b"kept").unwrap();
    let mut held = fs::File::open(r.m.mnt("f")).unwrap();
    // Taken before the kill: the keeper's deadline starts once it sees the death, after this.
    let started = Instant::now();
    r.kill();
    let path = r.m.mnt("never-looked-up");
    let err = within(common::PATIENCE, "stat on an orphaned mount", move || {
        fs::metadata(path).unwrap_err()
    });
    let waited = started.elapsed();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "unexpected error {err}");
    assert!(waited >= DEADLINE, "failed before the deadline: {waited:?}");
    assert!(r.m.is_mounted(), "the mount stays");
    assert!(r.keeper.ls_json().contains("\"state\":\"failing\""), "{}", r.keeper.ls_json());
    // Past the deadline, new requests fail at once.
    let asked = Instant::now();
    let path = r.m.mnt("another");
    let err =
        within(common::PATIENCE, "a stat while failing", move || fs::metadata(path).unwrap_err());
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert!(asked.elapsed() < DEADLINE / 2, "took {:?}", asked.elapsed());

    // A server started afterwards re-attaches and serves, the held fd included.
    r.start(&[]);
    assert_eq!(fs::read(r.m.mnt("f")).unwrap(), b"kept");
    let mut back = Vec::new();
    held.seek(SeekFrom::Start(0)).unwrap();
    held.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"kept", "the fd opened before the crash reads again");
    assert!(
        fs::metadata(r.m.mnt("never-looked-up")).unwrap_err().kind()
            == std::io::ErrorKind::NotFound
    );
}

#[test]
fn keeper_umount_of_a_dead_servers_mount_returns_at_once() {
    let mut r = Recoverable::new("");
    r.start(&[]);
    r.kill();
    let blocked = {
        let path = r.m.mnt("x");
        in_thread(move || fs::metadata(path).map(|_| ()))
    };
    let started = Instant::now();
    let out = Command::new(workspace_bin("fuse-keeper"))
        .arg("umount")
        .arg("test")
        .env("FUSE_KEEPER_SOCKET", &r.keeper.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "fuse-keeper umount: {}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < common::PROMPT, "umount took {:?}", started.elapsed());
    assert!(!r.m.is_mounted());
    assert!(
        blocked.recv_timeout(common::PATIENCE).expect("the waiting stat was released").is_err()
    );
}

/// One field of the one connection in `fuse-keeper ls --json`.
fn ls_field(keeper: &Keeper, field: &str) -> String {
    let ls = keeper.ls_json();
    assert!(ls.starts_with("{\"schema_version\":1,\"connections\":[{"), "{ls}");
    let key = format!("\"{field}\":");
    let at = ls.find(&key).unwrap_or_else(|| panic!("no {field} in {ls}")) + key.len();
    ls[at..].split([',', '}']).next().unwrap().to_owned()
}

/// Scraped over HTTP while the server is SIGKILLed and restarted: recoveries, the orphaned-time
/// histogram and `ls`'s count move by exactly one per kill, registrations not at all, and the
/// connection shows orphaned between a kill and the restart; a planned handover counts as a
/// handover, not a recovery. An application holding a file open sees no error throughout.
#[test]
fn metrics_and_ls_count_every_recovery_and_handover_of_a_crash_loop() {
    let mut r = Recoverable::with_keeper("", &["--metrics", "127.0.0.1:0"]);
    r.start(&[]);
    let url = common::metrics_url(&|| r.keeper.log());
    let first = common::scrape(&url, None);
    assert_eq!(first.get("TYPE fuse_keeper_recoveries").map(String::as_str), Some("counter"));
    assert_eq!(
        first.get("TYPE fuse_keeper_orphaned_seconds").map(String::as_str),
        Some("histogram")
    );
    assert_eq!(common::sample(&first, "fuse_keeper_registrations_total"), 1.0);
    assert_eq!(common::sample(&first, "fuse_keeper_connections{state=serving}"), 1.0);
    assert_eq!(ls_field(&r.keeper, "recoveries"), "0");
    assert_eq!(ls_field(&r.keeper, "last_recovery_us"), "null");
    let mut held = fs::File::create(r.m.mnt("held")).unwrap();
    const KILLS: u32 = 5;
    for kill in 1..=KILLS {
        held.write_all(b"x").unwrap();
        r.kill();
        // The keeper sees the death through the server's pidfd, soon after the reap.
        let deadline = Instant::now() + common::PATIENCE;
        while common::sample(&common::scrape(&url, None), "fuse_keeper_connections{state=orphaned}")
            != 1.0
        {
            assert!(Instant::now() < deadline, "never shown orphaned after kill {kill}");
            sleep(Duration::from_millis(20));
        }
        r.start(&[]);
        let s = common::scrape(&url, None);
        let n = f64::from(kill);
        assert_eq!(common::sample(&s, "fuse_keeper_recoveries_total"), n, "after kill {kill}");
        assert_eq!(
            common::sample(&s, "fuse_keeper_orphaned_seconds_count"),
            n,
            "after kill {kill}"
        );
        assert_eq!(common::sample(&s, "fuse_keeper_orphaned_seconds_bucket{le=+Inf}"), n);
        assert!(common::sample(&s, "fuse_keeper_orphaned_seconds_sum") > 0.0);
        assert_eq!(
            common::sample(&s, "fuse_keeper_registrations_total"),
            1.0,
            "a restart is no registration"
        );
        assert_eq!(common::sample(&s, "fuse_keeper_connections{state=serving}"), 1.0);
        assert_eq!(common::sample(&s, "fuse_keeper_connections{state=orphaned}"), 0.0);
        assert_eq!(ls_field(&r.keeper, "recoveries"), kill.to_string());
    }
    let last: u64 = ls_field(&r.keeper, "last_recovery_us").parse().unwrap();
    assert!(last > 0, "last recovery took {last} us");
    // A planned handover: the old server exits 0, the new one serves.
    let mut new = r.command();
    new.args(["-o", "handover"]);
    let old = r.m.server.replace(new.spawn().unwrap());
    let status = old.map(|mut o| o.wait().unwrap()).unwrap();
    assert!(status.success(), "the old server exits 0 after a handover: {status}");
    r.wait_serving();
    // `fuse-keeper metrics` prints the same exposition through the keeper socket.
    let out = Command::new(workspace_bin("fuse-keeper"))
        .arg("metrics")
        .env("FUSE_KEEPER_SOCKET", &r.keeper.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = common::scrape("-", Some(&String::from_utf8(out.stdout).unwrap()));
    assert_eq!(common::sample(&s, "fuse_keeper_handovers_total"), 1.0);
    assert_eq!(
        common::sample(&s, "fuse_keeper_recoveries_total"),
        f64::from(KILLS),
        "a handover is no recovery"
    );
    assert_eq!(
        common::sample(&s, "fuse_keeper_attach_duration_seconds_count"),
        f64::from(KILLS + 1)
    );
    assert_eq!(ls_field(&r.keeper, "handovers"), "1");
    assert!(common::sample(&s, "process_resident_memory_bytes") > 0.0);
    assert!(common::sample(&s, "fuse_keeper_held_fds") >= 2.0);
    held.write_all(b"x").unwrap();
    held.sync_all().unwrap();
    assert_eq!(fs::read(r.m.src("held")).unwrap(), vec![b'x'; KILLS as usize + 1]);
    // Metrics are for root and the keeper's uid: another uid connecting to root's keeper
    // socket (mode 0666) is refused.
    let out = Command::new(workspace_bin("fuse-keeper"))
        .arg("metrics")
        .env("FUSE_KEEPER_SOCKET", &r.keeper.socket)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("metrics are for root"), "{stderr}");
}

#[test]
fn a_clean_unmount_unregisters_and_the_next_start_mounts_fresh() {
    let mut r = Recoverable::new("");
    r.start(&[]);
    fuse_transport::unmount_detached(&r.m.mountpoint).unwrap();
    let status = r.m.wait_exit(common::PATIENCE).expect("server exits after unmount");
    assert!(status.success(), "{status}");
    let deadline = Instant::now() + common::PATIENCE;
    while r.keeper.ls_json().contains("\"test\"") {
        assert!(Instant::now() < deadline, "the tag is still registered: {}", r.keeper.ls_json());
        sleep(Duration::from_millis(20));
    }
    r.start(&[]);
    assert!(r.keeper.log().matches("register").count() >= 2, "{}", r.keeper.log());
}

/// The pid of the process serving the unix socket at `path` (SO_PEERCRED).
fn socket_owner(path: &Path) -> i32 {
    socket_peer(path).expect("connect to the socket").as_raw_nonzero().get()
}

fn socket_peer(path: &Path) -> rustix::io::Result<rustix::process::Pid> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType, connect, socket, sockopt};
    let fd = socket(AddressFamily::UNIX, SocketType::SEQPACKET, None)?;
    connect(&fd, &SocketAddrUnix::new(path)?)?;
    Ok(sockopt::socket_peercred(&fd)?.pid)
}

#[test]
fn a_server_starts_a_detached_keeper_when_none_answers() {
    /// Stops, when dropped, the process serving the socket at its path (by SO_PEERCRED: the
    /// keeper the server started is stopped even if the test fails before it learns the pid).
    struct StopKeeperAt(std::path::PathBuf);
    impl Drop for StopKeeperAt {
        fn drop(&mut self) {
            if let Ok(pid) = socket_peer(&self.0) {
                let _ = rustix::process::kill_process(pid, Signal::TERM);
            }
        }
    }
    let mut m = Mounted::dirs();
    let socket = m.dir.path().join("auto.sock");
    let _keeper = StopKeeperAt(socket.clone());
    let mut server = Command::new(common::BIN)
        .args(["-f", "-o", "tag=auto"])
        .arg(&m.source)
        .arg(&m.mountpoint)
        .env("FUSE_KEEPER_SOCKET", &socket)
        .env("FUSE_KEEPER_BIN", workspace_bin("fuse-keeper"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let server_pid = server.id() as i32;
    m.server = Some(server);
    m.wait_mounted();
    let keeper = rustix::process::Pid::from_raw(socket_owner(&socket)).unwrap();
    assert_ne!(keeper.as_raw_nonzero().get(), server_pid);
    let keeper_sid = rustix::process::getsid(Some(keeper)).unwrap();
    let server_sid = rustix::process::getsid(rustix::process::Pid::from_raw(server_pid)).unwrap();
    assert_ne!(keeper_sid, server_sid, "the keeper runs in its own session");
    let stat = fs::read_to_string(format!("/proc/{}/stat", keeper.as_raw_nonzero())).unwrap();
    let ppid: i32 =
        stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_ne!(ppid, server_pid, "the keeper is not the server's child");
    // It holds the connection: kill the server, and a new one re-attaches.
    fs::write(m.mnt("f"), b"kept").unwrap();
    m.signal(Signal::KILL);
    m.wait_exit(common::PATIENCE).unwrap();
    server = Command::new(common::BIN)
        .args(["-f", "-o", "tag=auto"])
        .arg(&m.source)
        .arg(&m.mountpoint)
        .env("FUSE_KEEPER_SOCKET", &socket)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    m.server = Some(server);
    assert_eq!(
        within(common::PATIENCE, "read after restart", {
            let p = m.mnt("f");
            move || fs::read(p).unwrap()
        }),
        b"kept"
    );
}

/// What an application holding an fd opened with this flag does after the server's crash:
/// each handle is opened before the SIGKILL and used after the restart, with every operation
/// it allows (issue 17: sqlite's fdatasync failed with ELOOP on a file created O_NOFOLLOW).
const FLAGS_APP: &str = r#"
import mmap, os, sys
m = sys.argv[1]
W, R = os.O_WRONLY, os.O_RDONLY
fds = {
    'create_nofollow': (os.open(m + '/new', os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, 0o644), 'rw'),
    'nofollow': (os.open(m + '/f_nofollow', os.O_RDWR | os.O_NOFOLLOW), 'rw'),
    'append': (os.open(m + '/f_append', W | os.O_APPEND), 'append'),
    'direct': (os.open(m + '/f_direct', os.O_RDWR | os.O_DIRECT), 'direct'),
    'sync': (os.open(m + '/f_sync', os.O_RDWR | os.O_SYNC), 'rw'),
    'dsync': (os.open(m + '/f_dsync', os.O_RDWR | os.O_DSYNC), 'rw'),
    'noatime': (os.open(m + '/f_noatime', R | os.O_NOATIME), 'r'),
    'nonblock': (os.open(m + '/f_nonblock', os.O_RDWR | os.O_NONBLOCK), 'rw'),
    'wronly_mode_0': (os.open(m + '/f_wronly', W), 'w'),
    'directory': (os.open(m + '/d', R | os.O_DIRECTORY), 'dir'),
}
os.chmod(m + '/f_wronly', 0)
print('ready', flush=True)
sys.stdin.readline()
for name, (fd, kind) in fds.items():
    try:
        if kind in ('rw', 'w'):
            assert os.pwrite(fd, b'after', 0) == 5
            os.fsync(fd); os.fdatasync(fd); os.ftruncate(fd, 5)
        if kind in ('rw', 'r'):
            os.pread(fd, 5, 0)
        if kind == 'append':
            before = os.fstat(fd).st_size
            os.write(fd, b'tail'); os.fsync(fd)
            assert os.fstat(fd).st_size == before + 4, 'O_APPEND did not append'
        if kind == 'direct':
            buf = mmap.mmap(-1, 4096)
            buf.write(b'd' * 4096)
            assert os.pwritev(fd, [buf], 0) == 4096
            back = mmap.mmap(-1, 4096)
            assert os.preadv(fd, [back], 0) == 4096 and back[:] == buf[:]
            os.fdatasync(fd)
        if kind == 'dir':
            assert sorted(os.listdir(fd)) == ['inside'], os.listdir(fd)
            os.fsync(fd)
        os.fstat(fd)
        os.close(fd)
        print(name, 'ok')
    except (OSError, AssertionError) as e:
        print(name, getattr(e, 'strerror', None) or e)
"#;

#[test]
fn handles_opened_with_every_open_flag_work_after_a_restart() {
    for mode in ["", ",nopassthrough"] {
        let mut r = Recoverable::new(mode);
        for name in
            ["nofollow", "append", "direct", "sync", "dsync", "noatime", "nonblock", "wronly"]
        {
            fs::write(r.m.src(&format!("f_{name}")), vec![b'x'; 8192]).unwrap();
        }
        fs::create_dir(r.m.src("d")).unwrap();
        fs::write(r.m.src("d/inside"), b"").unwrap();
        r.start(&[]);
        let mut app = Command::new("python3")
            .arg("-c")
            .arg(FLAGS_APP)
            .arg(&r.m.mountpoint)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(app.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{mode}: the application could not open its files");
        r.kill();
        r.start(&[]);
        app.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let mut said = String::new();
        stdout.read_to_string(&mut said).unwrap();
        let status = app.wait().unwrap();
        assert!(status.success(), "{mode}: {status}");
        let failed: Vec<&str> = said.lines().filter(|l| !l.ends_with(" ok")).collect();
        assert!(failed.is_empty(), "{mode}: after the restart: {failed:?}\n{said}");
        assert_eq!(said.lines().count(), 10, "{mode}: {said}");
    }
}

/// Files with no name left, an O_TMPFILE file and one unlinked while open: the next server
/// could not open them again (no name to find them by, and a file handle of an inode with no
/// link is refused), so the keeper holds their fds for it (HOLD) and every operation on them
/// goes on after a restart, with or without kernel passthrough.
#[test]
fn files_with_no_name_left_survive_a_restart() {
    use rustix::fs::{Mode, OFlags};
    for mode in ["", ",nopassthrough"] {
        let mut r = Recoverable::new(mode);
        r.start(&[]);
        let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        let tmp: fs::File =
            rustix::fs::open(&r.m.mountpoint, flags, Mode::from_raw_mode(0o600)).unwrap().into();
        let unlinked = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(r.m.mnt("doomed"))
            .unwrap();
        fs::remove_file(r.m.mnt("doomed")).unwrap();
        for mut f in [&tmp, &unlinked] {
            f.write_all(b"before\n").unwrap();
        }
        r.kill();
        r.start(&[]);
        for (what, mut f) in [("O_TMPFILE", &tmp), ("unlinked", &unlinked)] {
            f.write_all(b"after\n").unwrap();
            f.sync_all().unwrap_or_else(|e| panic!("{mode} {what}: fsync: {e}"));
            f.seek(SeekFrom::Start(0)).unwrap();
            let mut back = String::new();
            f.read_to_string(&mut back).unwrap();
            assert_eq!(back, "before\nafter\n", "{mode} {what}");
            let len = f.metadata().unwrap_or_else(|e| panic!("{mode} {what}: fstat: {e}")).len();
            assert_eq!(len, 13, "{mode} {what}");
            f.set_len(20).unwrap_or_else(|e| panic!("{mode} {what}: ftruncate: {e}"));
            assert_eq!(f.metadata().unwrap().len(), 20, "{mode} {what}");
        }
        // The O_TMPFILE file is given a name after the restart.
        use std::os::fd::AsRawFd;
        let proc = format!("/proc/self/fd/{}", tmp.as_raw_fd());
        rustix::fs::linkat(
            rustix::fs::CWD,
            proc.as_str(),
            rustix::fs::CWD,
            r.m.mnt("named"),
            rustix::fs::AtFlags::SYMLINK_FOLLOW,
        )
        .unwrap_or_else(|e| panic!("{mode}: linkat of the O_TMPFILE file: {e}"));
        assert_eq!(&fs::read(r.m.src("named")).unwrap()[..13], b"before\nafter\n");
        drop((tmp, unlinked));
    }
}

/// File handles of files on the mount (what an NFS export hands its clients) open the same
/// files after the kernel has forgotten their inodes (drop_caches) and after the server was
/// SIGKILLed and restarted (FUSE_EXPORT_SUPPORT: LOOKUP of "." and ".." answered from the
/// state store; a connectable handle makes the kernel walk ".." up to the root); a handle of
/// a file removed behind the server's back is stale (ESTALE), and no other file is ever
/// opened in its place.
#[test]
fn file_handles_open_their_files_after_the_kernel_forgot_them_and_after_a_restart() {
    // noatime: the server works on a detached copy of the source's mount (another mount id),
    // and must still identify inodes by the source's, as the previous server recorded them.
    for mode in ["", ",nopassthrough", ",writeback", ",noatime"] {
        let mut r = Recoverable::new(mode);
        fs::create_dir_all(r.m.src("d/e")).unwrap();
        let files = [("d/f", "in d"), ("g", "at the root"), ("gone", "removed"), ("d/e/h", "deep")];
        for (name, content) in files {
            fs::write(r.m.src(name), content).unwrap();
        }
        r.start(&[]);
        let paths = ["d/f", "g", "gone", "d/e", "d", "d/e/h"];
        let mut args: Vec<std::ffi::OsString> = paths.map(|p| r.m.mnt(p).into()).to_vec();
        args.push(format!("connectable:{}", r.m.mnt("d/e/h").display()).into());
        let encode = Command::new("python3")
            .args(["-c", common::HANDLES_APP, "encode"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&encode.stderr);
        assert!(encode.status.success(), "{mode}: {stderr}");
        let handles: Vec<String> =
            String::from_utf8(encode.stdout).unwrap().lines().map(String::from).collect();
        assert_eq!(handles.len(), args.len());
        fs::remove_file(r.m.src("gone")).unwrap();
        let want = ["in d", "at the root", "ESTALE", "dir ['h']", "dir ['e', 'f']", "deep", "deep"];
        for when in ["after drop_caches", "after a SIGKILL and restart"] {
            if when.contains("SIGKILL") {
                r.kill();
                r.start(&[]);
            }
            forget_everything(&r.keeper, &format!("{mode} {when}"));
            let open = Command::new("python3")
                .args(["-c", common::HANDLES_APP, "open"])
                .arg(&r.m.mountpoint)
                .args(&handles)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&open.stderr);
            assert!(open.status.success(), "{mode} {when}: {stderr}");
            let said = String::from_utf8(open.stdout).unwrap();
            let got: Vec<&str> = said.lines().collect();
            assert_eq!(got, want, "{mode} {when}: the handles of {paths:?} opened");
            let source_mnt = rustix::fs::statx(
                rustix::fs::CWD,
                &r.m.source,
                rustix::fs::AtFlags::empty(),
                rustix::fs::StatxFlags::MNT_ID,
            )
            .unwrap()
            .stx_mnt_id;
            let census = passthroughfs::inode::InodeTable::census(&r.keeper.state_store());
            assert!(
                census.iter().all(|(key, _)| key.mnt_id == source_mnt),
                "{mode} {when}: inodes identified by another mount than the source's {source_mnt}: \
                 {census:?}"
            );
        }
    }
}

/// Drops the kernel's dentry and inode caches until it has forgotten every inode of the
/// mount: no record in the state store has a lookup count left.
fn forget_everything(keeper: &Keeper, what: &str) {
    let store = keeper.state_store();
    let deadline = Instant::now() + common::PATIENCE;
    loop {
        fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        let counted: Vec<_> = passthroughfs::inode::InodeTable::census(&store)
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .collect();
        if counted.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: the kernel still holds {counted:?}");
        sleep(Duration::from_millis(50));
    }
}

/// A server re-attached by a process that holds a file on the mount and sits in it (a shell
/// in the mount restarting a crashed server) lets go of both: kept, they would pin the mount
/// to the server itself, and a lazy unmount would leave it serving itself for ever.
#[test]
fn a_server_restarted_from_inside_its_mount_does_not_pin_it() {
    // Opens `held` and moves into the mountpoint while a server serves (a chdir into a
    // mount with no server would wait for one), then, once told on stdin, becomes the next
    // server there, with that file open, inheritable, as fd 7.
    const HOLDER: &str = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.dup2(fd, 7)
os.set_inheritable(7, True)
os.chdir(sys.argv[2])
print("open", flush=True)
sys.stdin.readline()
os.execv(sys.argv[3], sys.argv[3:])
"#;
    let mut r = Recoverable::new("");
    r.start(&[]);
    fs::write(r.m.mnt("held"), b"held").unwrap();
    let server = r.command();
    let mut holder = Command::new("python3");
    holder.arg("-c").arg(HOLDER).arg(r.m.mnt("held")).arg(&r.m.mountpoint);
    holder.arg(server.get_program()).args(server.get_args());
    holder.envs(server.get_envs().filter_map(|(k, v)| Some((k, v?))));
    holder.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = holder.spawn().unwrap();
    let mut said = [0u8; 5];
    child.stdout.as_mut().unwrap().read_exact(&mut said).unwrap();
    assert_eq!(&said, b"open\n");
    r.kill();
    let mut tell = child.stdin.take().unwrap();
    tell.write_all(b"go\n").unwrap();
    drop(tell);
    r.m.server = Some(child);
    r.wait_serving();
    assert_eq!(fs::read(r.m.mnt("held")).unwrap(), b"held", "the restarted server serves");
    let pid = r.m.pid();
    let on_mount = |link: std::path::PathBuf| {
        fs::read_link(link).is_ok_and(|target| target.starts_with(&r.m.mountpoint))
    };
    let fds: Vec<_> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| on_mount(e.path()))
        .collect();
    assert!(fds.is_empty(), "the server keeps inherited fds on its mount: {fds:?}");
    assert!(!on_mount(format!("/proc/{pid}/cwd").into()), "the server sits in its own mount");
    fuse_transport::unmount_detached(&r.m.mountpoint).unwrap();
    let status = r.m.wait_exit(common::PATIENCE).expect("the server ends with its mount");
    assert!(status.success(), "exit status {status}");
}

/// On a recoverable mount with more inodes than the server keeps fds of (half its fd limit),
/// unlinking files nobody has open reopens none of them: a file with no name left does not
/// open by handle, and each attempt was a failing syscall and a warning per unlink.
#[test]
fn unlinking_files_whose_fds_left_the_cache_reopens_none() {
    let mut r = Recoverable::new("");
    for i in 0..400 {
        fs::write(r.m.src(&format!("f{i:03}")), b"x").unwrap();
    }
    let log = r.m.dir.path().join("server.log");
    let server = r.command();
    let mut limited = Command::new("prlimit");
    limited.arg("--nofile=256:256").arg("--").arg(server.get_program()).args(server.get_args());
    limited.envs(server.get_envs().filter_map(|(k, v)| Some((k, v?))));
    limited.stdin(Stdio::null()).stderr(fs::File::create(&log).unwrap());
    r.m.server = Some(limited.spawn().unwrap());
    r.m.wait_mounted();
    r.wait_serving();
    for i in 0..400 {
        assert!(fs::metadata(r.m.mnt(&format!("f{i:03}"))).unwrap().is_file());
    }
    for i in 0..400 {
        fs::remove_file(r.m.mnt(&format!("f{i:03}"))).unwrap();
    }
    assert_eq!(fs::read_dir(&r.m.source).unwrap().count(), 0, "every file unlinked");
    let said = fs::read_to_string(&log).unwrap();
    assert!(!said.contains("cannot reopen"), "unlinks reopened inodes:\n{said}");
}
