//! Sessions on a real mount: a fresh session answers INIT; a resumed one, given the saved
//! negotiation and the device fds, reads no INIT and serves the same connection.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuse_abi::fuse_attr;
use fuse_server::{
    Attr, Channel, Context, DeviceCustody, Entry, Errno, FileHandle, Filesystem, Negotiation,
    NodeId, Session, SessionConfig,
};
use fuse_transport::MountOptions;

/// How long a test waits for what must happen: only a hang takes this long.
const PATIENCE: Duration = Duration::from_secs(60);

/// One file, `hello`, whose size says which server answered.
struct Hello {
    size: u64,
    inits: Arc<AtomicUsize>,
    /// Uniques of the LOOKUPs it answered.
    lookups: Arc<Mutex<Vec<u64>>>,
    /// How long each LOOKUP takes.
    delay: Duration,
    /// LOOKUPs that have started.
    entered: Arc<AtomicUsize>,
}

impl Hello {
    /// A `Hello` of `size` that answers at once.
    fn new(size: u64, inits: Arc<AtomicUsize>, lookups: Arc<Mutex<Vec<u64>>>) -> Hello {
        Hello { size, inits, lookups, delay: Duration::ZERO, entered: Arc::default() }
    }

    fn attr(&self, nodeid: u64) -> fuse_attr {
        let mode = if nodeid == 1 { libc::S_IFDIR | 0o755 } else { libc::S_IFREG | 0o644 };
        fuse_attr {
            ino: nodeid,
            size: if nodeid == 1 { 0 } else { self.size },
            mode,
            nlink: 1,
            ..Default::default()
        }
    }
}

impl Filesystem for Hello {
    fn init(&self, _flags: u64) {
        self.inits.fetch_add(1, Ordering::SeqCst);
    }
    fn lookup(&self, ctx: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<Entry, Errno> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.lookups.lock().unwrap().push(ctx.unique.raw());
        if parent != NodeId::ROOT || name != "hello" {
            return Err(Errno::ENOENT);
        }
        Ok(Entry {
            counted: ctx.counted(NodeId(2)),
            generation: 0,
            attr: self.attr(2),
            entry_valid: Duration::ZERO,
            attr_valid: Duration::ZERO,
        })
    }
    fn getattr(
        &self,
        _ctx: &Context<'_>,
        nodeid: NodeId,
        _fh: Option<FileHandle>,
    ) -> Result<Attr, Errno> {
        Ok(Attr { attr: self.attr(nodeid.0), valid: Duration::ZERO })
    }
}

/// Keeps a duplicate of every device fd, as the keeper will.
#[derive(Default)]
struct Holder(Mutex<Vec<OwnedFd>>);

impl DeviceCustody for Holder {
    fn adopt(&self, fd: BorrowedFd<'_>, index: usize) -> std::io::Result<()> {
        let mut held = self.0.lock().unwrap();
        assert_eq!(held.len(), index, "fds are adopted in order, each once");
        held.push(fd.try_clone_to_owned()?);
        Ok(())
    }
}

struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = fuse_transport::force_unmount(&self.0);
    }
}

/// Stats `path` on another thread; the size arrives on the receiver.
fn stat_in_thread(path: PathBuf) -> mpsc::Receiver<std::io::Result<u64>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::metadata(&path).map(|m| m.len()));
    });
    rx
}

fn stat_size(path: PathBuf) -> std::io::Result<u64> {
    stat_in_thread(path).recv_timeout(PATIENCE).expect("stat did not complete")
}

/// Mounts `mnt` with `holder` keeping a duplicate of its fd, and answers INIT with a fresh
/// session serving a `Hello` of size 1.
fn first_server(
    mnt: &Path,
    holder: &Arc<Holder>,
    inits: &Arc<AtomicUsize>,
    config: &SessionConfig,
) -> Session<Hello> {
    assert!(rustix::process::geteuid().is_root(), "mounting needs root");
    let options = MountOptions { fsname: Some("resume-test".into()), ..MountOptions::default() };
    let channel = fuse_server::mount(mnt, &options, holder.clone()).unwrap();
    let fs = Hello::new(1, inits.clone(), Arc::default());
    Session::start(fs, channel, config.clone()).unwrap()
}

/// Duplicates of the device fds the holder kept, for the next server.
fn held_fds(holder: &Holder) -> Vec<OwnedFd> {
    holder.0.lock().unwrap().iter().map(|fd| fd.as_fd().try_clone_to_owned().unwrap()).collect()
}

#[test]
fn a_resumed_session_serves_the_connection_without_init() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().to_path_buf();
    let _cleanup = Cleanup(mnt.clone());
    let holder = Arc::new(Holder::default());
    let inits = Arc::new(AtomicUsize::new(0));
    let config = SessionConfig { threads: 2, ..SessionConfig::default() };

    // First server: a fresh session answers INIT, then dies before serving anything (its
    // fds are closed; only the holder's duplicates keep the connection).
    let first = first_server(&mnt, &holder, &inits, &config);
    let saved: Negotiation = *first.negotiation();
    assert!(saved.minor() >= fuse_server::MIN_MINOR);
    drop(first);

    // The holder kept the connection alive. A new server resumes it from the saved
    // negotiation: no INIT is read (the kernel sends only one), yet requests are answered.
    let fds = held_fds(&holder);
    assert_eq!(fds.len(), 1, "the mount's fd was adopted before INIT was read");
    let second = Session::resume(
        Hello::new(2, inits.clone(), Arc::default()),
        Channel::new(fds, Arc::new(fuse_server::NoCustody)).unwrap(),
        saved,
        config,
    );
    assert_eq!(second.negotiation().reply.max_write, saved.reply.max_write);
    std::thread::scope(|s| {
        s.spawn(|| second.run());
        assert_eq!(stat_size(mnt.join("hello")).unwrap(), 2, "the resumed server answered");
        assert_eq!(second.channel().len(), 2, "worker 1 got a clone of the resumed master");
        assert_eq!(stat_size(mnt.join("missing")).unwrap_err().raw_os_error(), Some(libc::ENOENT));
        fuse_transport::force_unmount(&mnt).unwrap();
    });
    assert_eq!(inits.load(Ordering::SeqCst), 2, "each session initialised its filesystem once");
}

#[test]
fn a_request_read_by_a_dead_server_is_resent_to_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().to_path_buf();
    let _cleanup = Cleanup(mnt.clone());
    let holder = Arc::new(Holder::default());
    let inits = Arc::new(AtomicUsize::new(0));
    let config = SessionConfig { threads: 1, ..SessionConfig::default() };
    let first = first_server(&mnt, &holder, &inits, &config);
    let saved = *first.negotiation();

    // An application looks the file up; the first server reads the request and dies
    // before answering it.
    let rx = stat_in_thread(mnt.join("hello"));
    let mut buf = vec![0u8; saved.max_payload() + 8192];
    let n =
        fuse_transport::read_request(first.channel().master().as_fd(), &mut buf).unwrap().unwrap();
    let lost = fuse_proto::decode(&buf[..n], &Default::default()).unwrap();
    assert_eq!(lost.opcode, fuse_abi::fuse_opcode::FUSE_LOOKUP);
    let lost_unique = lost.unique;
    drop(first);
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the application waits, no error"
    );

    // The next server resumes and asks for a resend: the application's stat completes.
    let fds = held_fds(&holder);
    let lookups = Arc::new(Mutex::new(Vec::new()));
    let second = Session::resume(
        Hello::new(2, inits, lookups.clone()),
        Channel::new(fds, Arc::new(fuse_server::NoCustody)).unwrap(),
        saved,
        config,
    );
    std::thread::scope(|s| {
        s.spawn(|| second.run_then(|channel| channel.notify_resend()));
        let size = rx.recv_timeout(PATIENCE).expect("the resent LOOKUP was answered");
        assert_eq!(size.unwrap(), 2);
        fuse_transport::force_unmount(&mnt).unwrap();
    });
    let seen = lookups.lock().unwrap().clone();
    assert!(
        seen.contains(&(lost_unique | fuse_abi::FUSE_UNIQUE_RESEND)),
        "the resent request carries bit 63: lost {lost_unique:#x}, seen {seen:x?}"
    );
}

#[test]
fn a_stopped_session_answers_what_it_read_and_leaves_the_rest_to_the_next_without_resend() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().to_path_buf();
    let _cleanup = Cleanup(mnt.clone());
    let holder = Arc::new(Holder::default());
    let inits = Arc::new(AtomicUsize::new(0));
    let config = SessionConfig { threads: 3, ..SessionConfig::default() };
    let options = MountOptions { fsname: Some("stop-test".into()), ..MountOptions::default() };
    let channel = fuse_server::mount(&mnt, &options, holder.clone()).unwrap();
    let first_lookups = Arc::new(Mutex::new(Vec::new()));
    let entered = Arc::new(AtomicUsize::new(0));
    let slow = Hello {
        size: 1,
        inits: inits.clone(),
        lookups: first_lookups.clone(),
        delay: Duration::from_millis(400),
        entered: entered.clone(),
    };
    let first = Session::start(slow, channel, config.clone()).unwrap();
    let saved = *first.negotiation();
    let stop = first.stop_handle();

    let (in_flight, queued) = std::thread::scope(|s| {
        let run = s.spawn(|| first.run());
        // A LOOKUP inside the first server (it takes 400 ms) when the stop comes: the stop
        // waits for its answer. Two workers are idle in read(2): the stop interrupts them.
        let in_flight = stat_in_thread(mnt.join("hello"));
        let deadline = std::time::Instant::now() + PATIENCE;
        while entered.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "the LOOKUP never reached the server");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Only a stop that waited for an idle reader forever would take this long.
        let asked = std::time::Instant::now();
        stop.stop();
        let took = asked.elapsed();
        assert!(took < PATIENCE, "stopping took {took:?}");
        run.join().unwrap().expect("a stopped session returns Ok");
        assert_eq!(first_lookups.lock().unwrap().len(), 1, "the LOOKUP in flight was answered");
        // No server reads now: a new request waits in the kernel.
        let queued = stat_in_thread(mnt.join("hello"));
        assert!(queued.recv_timeout(Duration::from_millis(300)).is_err(), "nobody answers it");
        (in_flight, queued)
    });
    drop(first);

    // The next server resumes without FUSE_NOTIFY_RESEND and gets the queued request.
    let lookups = Arc::new(Mutex::new(Vec::new()));
    let second = Session::resume(
        Hello::new(2, inits, lookups.clone()),
        Channel::new(held_fds(&holder), Arc::new(fuse_server::NoCustody)).unwrap(),
        saved,
        config,
    );
    std::thread::scope(|s| {
        s.spawn(|| second.run());
        let size = queued.recv_timeout(PATIENCE).expect("the queued stat completed");
        assert_eq!(size.unwrap(), 2, "the next server answered it");
        // The stat whose LOOKUP the first server answered goes on with a GETATTR (attributes
        // are valid for 0 s), which the next server answers.
        let size = in_flight.recv_timeout(PATIENCE).expect("the other stat completed");
        assert_eq!(size.unwrap(), 2);
        fuse_transport::force_unmount(&mnt).unwrap();
    });
    let seen = lookups.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the next server saw the queued LOOKUP");
    assert!(
        seen.iter().all(|u| u & fuse_abi::FUSE_UNIQUE_RESEND == 0),
        "nothing was resent: {seen:x?}"
    );
}
