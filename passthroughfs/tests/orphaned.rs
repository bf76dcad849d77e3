//! While a recoverable mount has no server, the node's ordinary tools (stat, df, `ls -l` of
//! the parent, umount) get their answers from the keeper at once, and every request they and
//! the applications make that the keeper cannot answer waits for the next server, which gets
//! it (docs/keeper-protocol.md, STAND_IN).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Keeper, Mounted, PATIENCE};

/// The bound the issue sets on these tools while a connection is orphaned.
const TOOL_BOUND: Duration = Duration::from_secs(1);

/// Runs `program args` and returns its output; it must exit within [`TOOL_BOUND`]. A tool
/// past the bound is stuck in the mount (in D state, unkillable): the connection is aborted
/// through fusectl to release it before the test fails.
fn run_promptly(m: &Mounted, program: &str, args: &[&str]) -> Output {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > PATIENCE {
            release(m);
            panic!("{program} {args:?} hung on the orphaned mount");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    let out = child.wait_with_output().unwrap();
    if took > TOOL_BOUND {
        release(m);
        panic!("{program} {args:?} took {took:?} on the orphaned mount");
    }
    out
}

/// Aborts `m`'s connection (releasing whatever waits in it).
fn release(m: &Mounted) {
    if let Ok(conn) = fuse_transport::connection_id(&m.mountpoint) {
        let _ = fuse_transport::abort_connection(conn);
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `program args` as a child, its output captured.
fn app(program: &str, args: &[&std::path::Path]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the keeper lists the connection `orphaned`.
fn wait_orphaned(keeper: &Keeper) {
    let deadline = Instant::now() + PATIENCE;
    while !keeper.ls_json().contains("\"state\":\"orphaned\"") {
        assert!(Instant::now() < deadline, "never orphaned: {}", keeper.ls_json());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `m`'s recoverable server (tag `tools`) under `keeper` and waits until it serves.
fn serve(m: &mut Mounted, keeper: &Keeper) {
    let child = m.server_command(&keeper.socket, "tag=tools,nokeeper_start").spawn().unwrap();
    m.server = Some(child);
    m.wait_mounted();
    keeper.wait_serving(m.pid());
}

fn kill_server(m: &mut Mounted) {
    let mut server = m.server.take().expect("a server");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn stat_df_ls_and_umount_answer_at_once_while_the_server_is_down_and_nothing_is_lost() {
    let mut m = Mounted::dirs();
    let keeper = Keeper::start(m.dir.path());
    fs::write(m.src("f"), b"hello").unwrap();
    serve(&mut m, &keeper);
    // A request served: the server has told the keeper what to answer (before any read).
    assert_eq!(fs::read(m.mnt("f")).unwrap(), b"hello");
    let root_ino = fs::metadata(&m.source).unwrap().ino();
    kill_server(&mut m);
    wait_orphaned(&keeper);

    // Applications meanwhile: a read (its LOOKUP waits for the next server) and a listing of
    // the root (its OPENDIR is answered by the keeper, its READDIR waits), which also keeps
    // the mount busy.
    fs::write(m.src("later"), b"written while the server was down").unwrap();
    let reader = app("cat", &[&m.mnt("later")]);
    let lister = app("ls", &["-a".as_ref(), &m.mountpoint]);
    // Both are inside: the listing has the root open, and two requests wait (the read's
    // LOOKUP, the listing's READDIR).
    let conn = fuse_transport::connection_id(&m.mountpoint).unwrap();
    let root_open = |pid: u32| {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == m.mountpoint))
            })
            .unwrap_or(false)
    };
    let waiting = || {
        fs::read_to_string(format!("/sys/fs/fuse/connections/{conn}/waiting"))
            .map_or(0, |w| w.trim().parse::<u32>().unwrap_or(0))
    };
    let deadline = Instant::now() + PATIENCE;
    while !(root_open(lister.id()) && waiting() >= 2) {
        assert!(Instant::now() < deadline, "the applications never waited inside");
        std::thread::sleep(Duration::from_millis(5));
    }

    let mnt = m.mountpoint.to_str().unwrap().to_owned();
    let parent = m.dir.path().to_str().unwrap().to_owned();
    let out = run_promptly(&m, "stat", &["-c", "%i %F", &mnt]);
    assert!(out.status.success(), "stat: {}", text(&out));
    assert_eq!(text(&out).trim(), format!("{root_ino} directory"), "the source root's inode");
    let out = run_promptly(&m, "df", &[&mnt]);
    assert!(out.status.success(), "df: {}", text(&out));
    assert!(text(&out).contains(m.source.to_str().unwrap()), "df: {}", text(&out));
    let out = run_promptly(&m, "stat", &["-f", "-c", "%b %S", &mnt]);
    assert!(out.status.success(), "stat -f: {}", text(&out));
    let out = run_promptly(&m, "ls", &["-l", &parent]);
    assert!(out.status.success() && text(&out).contains(" mnt\n"), "ls -l: {}", text(&out));
    // The listing holds the root open: busy, said at once.
    let out = run_promptly(&m, "umount", &[&mnt]);
    assert!(!out.status.success() && text(&out).contains("busy"), "umount: {}", text(&out));
    assert!(m.is_mounted());

    // The next server gets what the applications asked.
    serve(&mut m, &keeper);
    let read = reader.wait_with_output().unwrap();
    assert!(read.status.success(), "cat: {}", text(&read));
    assert_eq!(read.stdout, b"written while the server was down");
    let listed = lister.wait_with_output().unwrap();
    assert!(listed.status.success(), "ls: {}", text(&listed));
    let names: Vec<&str> = std::str::from_utf8(&listed.stdout).unwrap().lines().collect();
    assert_eq!(names, [".", "..", "f", "later"]);

    // Down again with nothing inside: umount unmounts it at once, and the keeper lets the
    // connection go.
    kill_server(&mut m);
    wait_orphaned(&keeper);
    let out = run_promptly(&m, "umount", &[&mnt]);
    assert!(out.status.success(), "umount: {}", text(&out));
    assert!(!m.is_mounted());
    let deadline = Instant::now() + PATIENCE;
    while keeper.ls_json().contains("\"tag\":\"tools\"") {
        assert!(Instant::now() < deadline, "the keeper kept it: {}", keeper.ls_json());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(keeper.log().contains("the orphaned connection ended"), "{}", keeper.log());
}
