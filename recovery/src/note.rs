//! A server's status note at its keepers (NOTE, docs/keeper-protocol.md): a short text
//! `fuse-keeper ls` shows with the connection, such as what a wrapper runs behind it and how
//! often it restarted it.

use std::time::Duration;

use fuse_keeper_client::protocol::{self, MAX_NOTE};
use fuse_keeper_client::{KeeperClient, KeeperError};
use tracing::{debug, warn};

use crate::RecoveryOptions;

/// How long publishing waits for each keeper (which answers at once unless it is gone).
const NOTE_TIMEOUT: Duration = Duration::from_secs(1);

/// Publishes `note` as the status note of the connection [`RecoveryOptions::tag`] at every
/// keeper of [`RecoveryOptions::sockets`] (each on a connection of its own, closed after), once
/// [`serve`](crate::serve()) has registered or attached it; it replaces the last note and an
/// empty one clears it. The keeper takes it from the connection's owner uid (this server's),
/// its rescue uid or root, and keeps it with the connection until the next or until the
/// connection goes; a keeper that restarts forgets it (publish again now and then to cover
/// that).
///
/// `note` is made to fit first: every control or invisible character
/// ([`protocol::is_unprintable`]) becomes `?` and it is cut to [`MAX_NOTE`] bytes at a
/// character boundary. Best effort: a keeper that does not answer, is too old for notes or
/// refuses is logged (debug for the first two, warn for a refusal) and skipped. Returns how
/// many keepers took it.
pub fn publish_note(options: &RecoveryOptions, note: &str) -> usize {
    let note = fit_note(note);
    let mut taken = 0;
    for socket in &options.sockets {
        let result = KeeperClient::connect(socket).and_then(|mut client| {
            client.set_timeout(Some(NOTE_TIMEOUT))?;
            client.note(&options.tag, &note)
        });
        match result {
            Ok(()) => taken += 1,
            // Refused (EPERM, ENOENT, EINVAL): a bug to see. An older keeper knows no NOTE.
            Err(err @ KeeperError::Refused { .. })
                if err.errno() != Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()) =>
            {
                warn!(%err, socket = %socket.display(), tag = %options.tag, "note refused");
            }
            Err(err) => {
                debug!(%err, socket = %socket.display(), tag = %options.tag, "note not published");
            }
        }
    }
    taken
}

/// `note` with every unprintable character replaced by `?`, cut to [`MAX_NOTE`] bytes at a
/// character boundary: what NOTE accepts ([`protocol::validate_note`]).
fn fit_note(note: &str) -> String {
    let mut out = String::with_capacity(note.len().min(MAX_NOTE));
    for c in note.chars().map(|c| if protocol::is_unprintable(c) { '?' } else { c }) {
        if out.len() + c.len_utf8() > MAX_NOTE {
            break;
        }
        out.push(c);
    }
    debug_assert!(protocol::validate_note(&out).is_ok());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_made_printable_and_cut_to_fit() {
        assert_eq!(fit_note("wrapped: sshfs, 3 restarts"), "wrapped: sshfs, 3 restarts");
        assert_eq!(fit_note("a\nb\x1b[2J\u{202e}c"), "a?b?[2J?c");
        let long = "é".repeat(100);
        let fitted = fit_note(&long);
        assert_eq!(fitted.len(), MAX_NOTE);
        assert!(protocol::validate_note(&fitted).is_ok());
        assert_eq!(fit_note(&format!("x{long}")).len(), MAX_NOTE - 1);
    }

    /// A keeper at a fresh socket path that answers one client's NOTEs OK and returns them.
    fn fake_keeper() -> (std::path::PathBuf, std::thread::JoinHandle<Vec<protocol::Request>>) {
        use std::os::fd::AsFd;
        let path = std::env::temp_dir().join(format!("fr-note-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = fuse_keeper_client::listen_socket(&path, 1).unwrap();
        let keeper = std::thread::spawn(move || {
            let sock = rustix::net::accept(&listener).unwrap();
            let mut got = Vec::new();
            while let Some(m) = protocol::recv_message(sock.as_fd(), 65536, 0).unwrap() {
                got.push(protocol::decode_request(&m.bytes, 0).unwrap());
                let (ok, _) = protocol::encode_reply(&protocol::Reply::Ok);
                protocol::send_message(sock.as_fd(), &ok, &[]).unwrap();
            }
            got
        });
        (path, keeper)
    }

    #[test]
    fn a_note_goes_to_every_keeper_that_answers() {
        let (path, keeper) = fake_keeper();
        let mut options = RecoveryOptions::new("wrapped");
        options.sockets = vec!["/nonexistent/fuse-keeper-note.sock".into(), path.clone()];
        assert_eq!(publish_note(&options, "wrapped: a\tb, 1 restart"), 1);
        let _ = std::fs::remove_file(&path);
        let got = keeper.join().unwrap();
        let want = protocol::Request::Note {
            tag: "wrapped".into(),
            note: "wrapped: a?b, 1 restart".into(),
        };
        assert_eq!(got, [want]);
    }

    #[test]
    fn no_keeper_is_not_an_error() {
        let mut options = RecoveryOptions::new("t");
        options.sockets = vec!["/nonexistent/fuse-keeper-note.sock".into()];
        assert_eq!(publish_note(&options, "x"), 0);
    }
}
