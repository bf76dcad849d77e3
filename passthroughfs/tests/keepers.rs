//! Keeper death loses nothing: a server registered with two keepers survives dying while one
//! of them is dead, and a restarted keeper is given the connection again at once.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Keeper, Mounted};
use rustix::process::Signal;

const TAG: &str = "two-keepers";

fn keeper_dir(m: &Mounted, name: &str) -> PathBuf {
    let dir = m.dir.path().join(name);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A keeper on `dir`'s socket, replacing the socket file a killed keeper left behind (so
/// that the harness waits for the new keeper's own socket).
fn restart_keeper(dir: &Path) -> Keeper {
    let _ = fs::remove_file(dir.join("keeper.sock"));
    Keeper::start(dir)
}

/// The server, registered with the keepers of directories `d1` and `d2` (alive or not).
fn server(m: &Mounted, d1: &Path, d2: &Path, env: &[(&str, &str)]) -> Child {
    let options = format!(
        "tag={TAG},nokeeper_start,nopassthrough,threads=2,keeper={}:{}",
        d1.join("keeper.sock").display(),
        d2.join("keeper.sock").display()
    );
    Command::new(common::BIN)
        .args(["-f", "-o", &options])
        .arg(&m.source)
        .arg(&m.mountpoint)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// How long until `keeper` lists the tag as served by `pid` (fails after `PATIENCE`).
fn until_serving(keeper: &Keeper, pid: u32) -> Duration {
    let start = Instant::now();
    loop {
        let ls = keeper.ls_json();
        if ls.contains(&format!("\"tag\":\"{TAG}\""))
            && ls.contains(&format!("\"server_pid\":{pid}"))
        {
            return start.elapsed();
        }
        assert!(start.elapsed() < common::PATIENCE, "pid {pid} never listed: {ls}");
        sleep(Duration::from_millis(5));
    }
}

fn kill_server(m: &mut Mounted) {
    m.signal(Signal::KILL);
    m.wait_exit(common::PATIENCE).expect("killed server reaped");
}

#[test]
fn a_server_dying_while_one_of_its_two_keepers_is_dead_recovers_and_a_restarted_keeper_rejoins() {
    let mut m = Mounted::dirs();
    let content: Vec<u8> =
        (0..2u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(m.src("big"), &content).unwrap();
    let (d1, d2) = (keeper_dir(&m, "k1"), keeper_dir(&m, "k2"));
    let k1 = Keeper::start(&d1);
    let k2 = Keeper::start(&d2);
    m.server = Some(server(&m, &d1, &d2, &[("PASSTHROUGHFS_TEST_READ_DELAY_MS", "1500")]));
    m.wait_mounted();
    until_serving(&k1, m.pid());
    until_serving(&k2, m.pid());

    // A read in flight inside the server; keeper 1 dies, then the server dies.
    let (tx, rx) = mpsc::channel();
    let path = m.mnt("big");
    std::thread::spawn(move || {
        let _ = tx.send(fs::read(path));
    });
    m.wait_reads_inside(1);
    drop(k1);
    kill_server(&mut m);

    // The restarted server gets the connection back from keeper 2 alone.
    m.server = Some(server(&m, &d1, &d2, &[]));
    until_serving(&k2, m.pid());
    let read = rx.recv_timeout(common::PATIENCE).expect("the read in flight completed");
    assert_eq!(read.expect("the read in flight succeeded"), content, "the read got the right data");

    // Keeper 1 comes back: the live server registers with it again at once (a watch thread
    // retries every 10-200 ms; tests/peers/keeper-crash.sh reports how long it takes).
    let k1 = restart_keeper(&d1);
    let rejoined = until_serving(&k1, m.pid());
    assert!(rejoined < common::PROMPT, "keeper 1 listed the mount after {rejoined:?}");

    // Keeper 1 now holds every device fd: with keeper 2 dead, a server death still recovers.
    drop(k2);
    kill_server(&mut m);
    m.server = Some(server(&m, &d1, &d2, &[]));
    until_serving(&k1, m.pid());
    assert_eq!(fs::read(m.mnt("big")).unwrap(), content, "served through keeper 1");
}
