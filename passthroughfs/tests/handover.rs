//! Planned handover on real mounts: a new server started with `-o handover` takes the
//! connection from a live server that agrees; one started with `-o nohandover` refuses; a
//! server that cannot answer leaves the connection `attaching`, and one that dies meanwhile
//! hands it over by crashing (the new server then attaches as after any crash).

mod common;

use std::fs;
use std::process::Child;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Keeper, Mounted};
use rustix::process::Signal;

/// A server for the mount, logging to `log` in the test's directory.
fn server(m: &Mounted, keeper: &Keeper, options: &str, log: &str) -> Child {
    let log = fs::File::create(m.dir.path().join(log)).unwrap();
    m.server_command(&keeper.socket, &format!("tag=ho,nokeeper_start{options}"))
        .env("RUST_LOG", "info")
        .stderr(log)
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "pid {} did not exit within {timeout:?}", child.id());
        sleep(Duration::from_millis(10));
    }
}

fn log_of(m: &Mounted, log: &str) -> String {
    fs::read_to_string(m.dir.path().join(log)).unwrap_or_default()
}

/// Waits until the keeper's listing contains `what`.
fn wait_listed(keeper: &Keeper, what: &str) {
    let deadline = Instant::now() + common::PATIENCE;
    loop {
        let ls = keeper.ls_json();
        if ls.contains(what) {
            return;
        }
        assert!(Instant::now() < deadline, "never listed {what}: {ls}");
        sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_server_started_with_nohandover_refuses_and_serves_on() {
    let mut m = Mounted::dirs();
    fs::write(m.src("f"), b"hello").unwrap();
    let keeper = Keeper::start(m.dir.path());
    m.server = Some(server(&m, &keeper, ",nohandover", "old.log"));
    m.wait_mounted();
    keeper.wait_serving(m.pid());

    let mut refused = server(&m, &keeper, ",handover", "new.log");
    let status = wait_exit(&mut refused, common::PATIENCE);
    assert!(!status.success(), "a refused handover must fail the new server");
    let log = log_of(&m, "new.log");
    assert!(log.contains("refused to hand over"), "the reason is given: {log}");
    assert!(log_of(&m, "old.log").contains("refused (not allowed)"));
    assert_eq!(fs::read(m.mnt("f")).unwrap(), b"hello", "the old server still serves");
    keeper.wait_serving(m.pid());
}

#[test]
fn a_live_server_hands_over_under_reads_exits_zero_and_nothing_is_resent() {
    let mut m = Mounted::dirs();
    fs::write(m.src("f"), b"hello").unwrap();
    let keeper = Keeper::start(m.dir.path());
    m.server = Some(server(&m, &keeper, ",nopassthrough", "old.log"));
    m.wait_mounted();
    keeper.wait_serving(m.pid());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let (path, done) = (m.mnt("f"), done.clone());
        std::thread::spawn(move || {
            (0..3000)
                .map(|_| {
                    let read = fs::read(&path).map(|d| d.len());
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    read
                })
                .collect::<Vec<_>>()
        })
    };
    // The handover starts under reads: the first one has been answered.
    let deadline = Instant::now() + common::PATIENCE;
    while done.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the first read never completed");
        sleep(Duration::from_millis(1));
    }
    let mut old = m.server.take().unwrap();
    m.server = Some(server(&m, &keeper, ",nopassthrough,handover", "new.log"));
    let status = wait_exit(&mut old, common::PATIENCE);
    assert!(status.success(), "the old server exits 0 after handing over: {status}");
    assert!(log_of(&m, "old.log").contains("handed over"), "{}", log_of(&m, "old.log"));
    keeper.wait_serving(m.pid());
    let reads = reader.join().unwrap();
    let failed: Vec<_> = reads.iter().filter(|r| !matches!(r, Ok(5))).collect();
    assert!(failed.is_empty(), "reads failed across the handover: {failed:?}");
    assert!(keeper.log().contains("nothing to resend"), "{}", keeper.log());
    assert!(!log_of(&m, "new.log").contains("resent request"), "{}", log_of(&m, "new.log"));
}

#[test]
fn a_frozen_server_leaves_the_connection_attaching_and_one_that_dies_hands_it_over() {
    let mut m = Mounted::dirs();
    fs::write(m.src("f"), b"hello").unwrap();
    let keeper = Keeper::start(m.dir.path());
    m.server = Some(server(&m, &keeper, "", "old.log"));
    m.wait_mounted();
    keeper.wait_serving(m.pid());

    // The running server is stopped (SIGSTOP): it cannot answer the HANDOVER_ASK.
    m.signal(Signal::STOP);
    let new = server(&m, &keeper, ",handover", "new.log");
    wait_listed(&keeper, "\"state\":\"attaching\"");

    // It dies without answering: the new server gets the connection as after a crash.
    m.signal(Signal::KILL);
    m.wait_exit(common::PATIENCE).expect("killed server reaped");
    m.server = Some(new);
    keeper.wait_serving(m.pid());
    assert_eq!(fs::read(m.mnt("f")).unwrap(), b"hello", "the new server serves");
    assert!(keeper.log().contains("the server died during the handover"), "{}", keeper.log());
}
