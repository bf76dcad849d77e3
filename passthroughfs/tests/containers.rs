//! A server in a container: its own user namespace (root inside is uid 65534 outside), mount
//! namespace and pid namespace, held by a "pod" process, while the keeper runs on the host.
//! The server names its rescue uid in its own namespace (0); the keeper stores it in its own
//! (65534, what SO_PEERCRED shows for the restarted server), so a server restarted in the pod
//! attaches and an application in the pod sees no error.

mod common;

use std::fs;
use std::os::unix::fs::chown;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Keeper, Mounted};

const OUTSIDE_UID: u32 = 65534;

/// Kills and reaps a child when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pid of the first child of `pid`, waiting up to 5 s for it.
fn child_of(pid: u32) -> u32 {
    let deadline = Instant::now() + common::PATIENCE;
    loop {
        let children =
            fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(child) = children.split_whitespace().next() {
            return child.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "pid {pid} has no child");
        sleep(Duration::from_millis(10));
    }
}

/// Waits until the pod's process runs its program (`sleep`) with its user namespace's maps
/// written: unshare forks it before the maps are in place, and nsenter into a namespace with
/// no gid map fails (`setgid failed: Invalid argument`).
fn pod_ready(pod: u32) {
    let deadline = Instant::now() + common::PATIENCE;
    let ready = || {
        let read =
            |what: &str| fs::read_to_string(format!("/proc/{pod}/{what}")).unwrap_or_default();
        read("comm").trim() == "sleep"
            && !read("uid_map").trim().is_empty()
            && !read("gid_map").trim().is_empty()
    };
    while !ready() {
        assert!(Instant::now() < deadline, "pod {pod} never ran sleep with its maps written");
        sleep(Duration::from_millis(10));
    }
}

/// `nsenter` into the pod's user and mount namespaces (and pid namespace with `pid`).
fn in_pod(pod: u32, pid_ns: bool) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg("-t").arg(pod.to_string()).args(["--user", "--mount"]);
    if pid_ns {
        cmd.arg("--pid");
    }
    cmd.arg("--");
    cmd
}

#[test]
fn a_server_in_a_user_and_pid_namespace_recovers_through_a_host_keeper() {
    let mut m = Mounted::dirs();
    chown(&m.source, Some(OUTSIDE_UID), Some(OUTSIDE_UID)).unwrap();
    fs::write(m.src("f"), b"from the pod").unwrap();
    chown(m.src("f"), Some(OUTSIDE_UID), Some(OUTSIDE_UID)).unwrap();
    let keeper = Keeper::start(m.dir.path());

    // The pod: user namespace mapping root to 65534, its own mount and pid namespaces.
    let unshare = Reaped(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork"])
            .args(["--kill-child", "sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare and setpriv (util-linux) are needed"),
    );
    let pod = child_of(unshare.0.id());
    pod_ready(pod);

    let server = || {
        let cmd = in_pod(pod, true)
            .arg(common::BIN)
            .args(["-f", "-o", "tag=pod,nokeeper_start,nopassthrough"])
            .arg(&m.source)
            .arg(&m.mountpoint)
            .env("FUSE_KEEPER_SOCKET", &keeper.socket)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Reaped(cmd)
    };
    let listed = |want: &str| {
        let deadline = Instant::now() + common::PATIENCE;
        loop {
            let ls = keeper.ls_json();
            if ls.contains(want) {
                return ls;
            }
            assert!(Instant::now() < deadline, "never listed {want}: {ls}\n{}", keeper.log());
            sleep(Duration::from_millis(20));
        }
    };
    let nsenter = server();
    let first = child_of(nsenter.0.id());
    let ls = listed(&format!("\"server_pid\":{first}"));
    assert!(ls.contains("\"owner_uid\":65534"), "owner as SO_PEERCRED shows it: {ls}");
    assert!(ls.contains("\"rescue_uid\":65534"), "rescue uid 0 in the pod is 65534 here: {ls}");
    assert!(!m.is_mounted(), "the mount lives in the pod's mount namespace only");

    let app = |script: &str| {
        let out = in_pod(pod, false).args(["sh", "-c", script]).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mnt = m.mountpoint.display().to_string();
    assert_eq!(app(&format!("cat {mnt}/f")), (true, "from the pod".into()));

    // The server dies; an application in the pod waits; the restarted server attaches.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(first as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    drop(nsenter);
    listed("\"state\":\"orphaned\"");
    let waiting = in_pod(pod, false)
        .args(["sh", "-c", &format!("cat {mnt}/f")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut waiting = waiting;
    sleep(Duration::from_millis(300));
    assert!(waiting.try_wait().unwrap().is_none(), "with no server the application waits");
    let nsenter = server();
    let second = child_of(nsenter.0.id());
    listed(&format!("\"server_pid\":{second}"));
    let out = common::within(common::PATIENCE, "the waiting read", move || {
        waiting.wait_with_output().unwrap()
    });
    assert!(out.status.success(), "the application in the pod saw an error");
    assert_eq!(out.stdout, b"from the pod");
    assert!(keeper.log().contains("rescue uid translated"), "{}", keeper.log());
    drop(nsenter);
    drop(unshare);
    m.server = None;
}
