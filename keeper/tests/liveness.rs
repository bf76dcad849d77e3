//! LIVENESS, WATCH and DIED (docs/keeper-protocol.md): a server's liveness page is taken only
//! from the entry's server and only as a sealed page, is shown read-only to the standby parked
//! for it, and a DIED hands the connection over at once only when the keeper's own read of
//! the page proves every thread of the server gone; no DIED is ever answered.
//!
//! The pages here are written by the test, as the kernel would mark them: what the keeper
//! reads is what is checked. That the kernel marks a real server's page is checked by
//! fuse-recovery's liveness tests and passthroughfs's standby tests.

mod common;

use std::os::fd::{AsFd, OwnedFd};

use common::{Keeper, dup, memfd, open_fuse, registration, unsealed_memfd};
use fuse_keeper::ConnState;
use fuse_keeper::KeeperError;
use fuse_keeper::client::{StandbyEvent, StandbyReply};
use fuse_keeper::protocol::liveness::{
    FUTEX_OWNER_DIED, FUTEX_WAITERS, LIVENESS_FIRST_SLOT, LIVENESS_LEN, LIVENESS_MAGIC,
};

/// A sealed liveness page whose slots say `slots` (words from the first slot on).
fn page(slots: &[u32]) -> OwnedFd {
    let mut bytes = vec![0; LIVENESS_LEN];
    bytes[..4].copy_from_slice(&LIVENESS_MAGIC.to_le_bytes());
    for (i, w) in slots.iter().enumerate() {
        let at = (LIVENESS_FIRST_SLOT + i) * 4;
        bytes[at..at + 4].copy_from_slice(&w.to_le_bytes());
    }
    memfd(&bytes)
}

/// Writes slot `i` of a page the test made.
fn set_slot(page: &OwnedFd, i: usize, word: u32) {
    let at = ((LIVENESS_FIRST_SLOT + i) * 4) as u64;
    assert_eq!(rustix::io::pwrite(page, &word.to_le_bytes(), at).unwrap(), 4);
}

const DIED: u32 = FUTEX_WAITERS | FUTEX_OWNER_DIED;

fn refused(r: Result<impl std::fmt::Debug, KeeperError>) -> i32 {
    match r {
        Err(KeeperError::Refused { errno, .. }) => errno,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Whether `fd` has something to read now.
fn readable(fd: impl AsFd) -> bool {
    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    rustix::event::poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 })).unwrap()
        > 0
}

#[test]
fn a_standby_sees_the_page_read_only_and_died_hands_it_over_only_once_the_page_proves_it() {
    let keeper = Keeper::start();
    let live = page(&[FUTEX_WAITERS | 4242, 0, FUTEX_WAITERS | 4243]);
    let mut server = keeper.registrant("lv", &["--liveness"], open_fuse(), Some(dup(&live)));
    let server_pid = server.pid();

    let mut standby = keeper.client();
    assert!(matches!(standby.standby("lv").unwrap(), StandbyReply::Parked));
    let StandbyEvent::Watch { server_pid: watched, page: shown } = standby.standby_next().unwrap()
    else {
        panic!("no WATCH after parking");
    };
    assert_eq!(watched, server_pid);
    // Read-only, and the server's page itself.
    assert_eq!(rustix::io::pwrite(&shown, &[0; 4], 0), Err(rustix::io::Errno::BADF));
    let mut word = [0; 4];
    rustix::io::pread(&shown, &mut word, 0).unwrap();
    assert_eq!(u32::from_le_bytes(word), LIVENESS_MAGIC);
    set_slot(&live, 1, FUTEX_WAITERS | 77);
    rustix::io::pread(&shown, &mut word, ((LIVENESS_FIRST_SLOT + 1) * 4) as u64).unwrap();
    assert_eq!(u32::from_le_bytes(word), FUTEX_WAITERS | 77);
    set_slot(&live, 1, 0);

    let died = standby.died_sender().unwrap();
    // One thread of the server still holds its slot: not taken, and not answered.
    set_slot(&live, 0, DIED);
    died.send("lv", server_pid).unwrap();
    // (DIED has no reply: two LIST round trips on a new connection see it handled.)
    keeper.settled_fds();
    assert!(keeper.log_text().contains("DIED not taken: its liveness page does not prove it gone"));
    // Of another server (pid), or another tag: not taken either.
    set_slot(&live, 2, DIED);
    died.send("lv", server_pid + 1).unwrap();
    died.send("other", server_pid).unwrap();
    keeper.settled_fds();
    assert!(!readable(&standby), "a DIED was answered");
    let e = keeper.entry("lv").unwrap();
    assert_eq!(
        (e.state, e.server_pid, e.standby_pid),
        (ConnState::Serving, Some(server_pid), Some(std::process::id()))
    );
    let log = keeper.log_text();
    assert!(log.contains("DIED not taken: another server than the entry's"), "{log}");
    assert!(log.contains("DIED not taken: another tag than the one it stands by for"), "{log}");

    // Every slot held says died now (slot 1 was given back): the connection is the standby's
    // at once, though the process lives (its pidfd has not fired).
    set_slot(&live, 1, 0);
    died.send("lv", server_pid).unwrap();
    let StandbyEvent::Attached(attached) = standby.standby_next().unwrap() else {
        panic!("DIED proved the server gone, yet no ATTACHED");
    };
    assert_eq!(attached.devices.len(), 1);
    assert!(server.is_running());
    let e = keeper.entry("lv").unwrap();
    assert_eq!((e.state, e.server_pid), (ConnState::Serving, Some(std::process::id())));
    assert!(keeper.log_text().contains("seen=\"its threads' liveness page\""));
    // The dead server's process exiting later changes nothing.
    server.kill();
    keeper.settled_fds();
    let e = keeper.entry("lv").unwrap();
    assert_eq!((e.state, e.server_pid), (ConnState::Serving, Some(std::process::id())));
    // A DIED after the takeover is not answered either.
    died.send("lv", server_pid).unwrap();
    keeper.settled_fds();
    assert!(!readable(&standby), "a late DIED was answered");
    standby.unregister("lv").unwrap();
}

#[test]
fn a_page_sent_before_the_standby_parks_and_one_sent_after_are_both_shown() {
    let keeper = Keeper::start();
    let dev = open_fuse();
    let reg = registration("later");
    // This process serves; a helper stands by.
    let mut client = keeper.client();
    client.register(&reg, dev.as_fd(), memfd(b"state").as_fd()).unwrap();
    let mut standby = keeper
        .helper(&[], "standby-watch", &["later"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(standby.stdout.take().unwrap()));
    let mut next = || lines.next().expect("the standby helper said nothing").unwrap();
    while next() != "parked" {}
    client.liveness("later", page(&[FUTEX_WAITERS | 1]).as_fd()).unwrap();
    assert_eq!(next(), format!("watch {}", std::process::id()));
    // Replaced: shown again, and the keeper holds one page, not two.
    let before = keeper.settled_fds();
    client.liveness("later", page(&[FUTEX_WAITERS | 2]).as_fd()).unwrap();
    assert_eq!(next(), format!("watch {}", std::process::id()));
    assert_eq!(
        keeper.settled_fds(),
        before + 2,
        "one page held, not two (and a probe: socket, pidfd)"
    );
    let _ = standby.kill();
    let _ = standby.wait();
    client.unregister("later").unwrap();
}

#[test]
fn liveness_is_taken_only_from_the_entrys_server_and_only_as_a_sealed_page_of_its_size() {
    let keeper = Keeper::start();
    let server = keeper.registrant("only", &[], open_fuse(), None);
    assert_eq!(refused(keeper.client().liveness("only", page(&[]).as_fd())), libc::EPERM);
    assert!(keeper.log_text().contains("refused liveness of tag only"));
    drop(server);

    let dev = open_fuse();
    let reg = registration("mine");
    let mut client = keeper.client();
    client.register(&reg, dev.as_fd(), memfd(b"state").as_fd()).unwrap();
    let unsealed = unsealed_memfd(&[0; LIVENESS_LEN]);
    assert_eq!(refused(client.liveness("mine", unsealed.as_fd())), libc::EINVAL);
    assert_eq!(refused(client.liveness("mine", memfd(&[0; 100]).as_fd())), libc::EINVAL);
    let file: OwnedFd = std::fs::File::open("/etc/hostname").unwrap().into();
    assert_eq!(refused(client.liveness("mine", file.as_fd())), libc::EINVAL);
    assert_eq!(refused(client.liveness("nosuchtag", page(&[]).as_fd())), libc::ENOENT);
    client.liveness("mine", page(&[]).as_fd()).unwrap();
    // A DIED from a client that stands by for nothing: not answered, nothing changes.
    let died = client.died_sender().unwrap();
    died.send("mine", std::process::id()).unwrap();
    keeper.settled_fds();
    assert!(!readable(&client), "a DIED was answered");
    assert_eq!(keeper.entry("mine").unwrap().state, ConnState::Serving);
    client.unregister("mine").unwrap();
}

/// This binary re-run as a helper process (common::run_helper); does nothing when run as a test.
#[test]
#[ignore = "a helper process that other tests start"]
fn keeper_test_helper() {
    common::run_helper();
}
