//! A read-only filesystem with one file, `hello.txt`, that says "Hello World!".
//!
//! ```sh
//! mkdir -p /tmp/hello
//! cargo run --example hello -- /tmp/hello     # as root, or as a user (through fusermount3)
//! cat /tmp/hello/hello.txt                    # in another terminal
//! ```
//!
//! Ctrl-C unmounts. The same job as fuser's `examples/hello.rs`.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fuse_server::{
    Attr, Context, DirFiller, Entry, Errno, FileHandle, Filesystem, MountOptions, NoCustody,
    NodeId, Result, Session, SessionConfig, fuse_attr,
};

/// How long the kernel may cache names and attributes: they never change.
const TTL: Duration = Duration::from_secs(1);
const HELLO: NodeId = NodeId(2);
const TEXT: &[u8] = b"Hello World!\n";

/// The filesystem: it keeps no state (the `hello_recoverable` example reuses it).
pub struct Hello;

fn attr(nodeid: NodeId) -> fuse_attr {
    let (mode, size, nlink) = if nodeid == NodeId::ROOT {
        (libc::S_IFDIR | 0o755, 0, 2)
    } else {
        (libc::S_IFREG | 0o444, TEXT.len() as u64, 1)
    };
    fuse_attr {
        ino: nodeid.raw(),
        mode,
        size,
        nlink,
        blocks: 1,
        blksize: 512,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        ..fuse_attr::default()
    }
}

impl Filesystem for Hello {
    fn lookup(&self, ctx: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<Entry> {
        if parent != NodeId::ROOT || name != "hello.txt" {
            return Err(Errno::ENOENT);
        }
        // The tree never changes, so its nodes live as long as the mount and there is no count
        // to keep; `counted` is still where an entry comes from.
        Ok(Entry {
            counted: ctx.counted(HELLO),
            generation: 0,
            attr: attr(HELLO),
            entry_valid: TTL,
            attr_valid: TTL,
        })
    }

    fn getattr(&self, _: &Context<'_>, nodeid: NodeId, _: Option<FileHandle>) -> Result<Attr> {
        match nodeid {
            NodeId::ROOT | HELLO => Ok(Attr { attr: attr(nodeid), valid: TTL }),
            _ => Err(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _: &Context<'_>,
        nodeid: NodeId,
        _: FileHandle,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        if nodeid != HELLO {
            return Err(Errno::EISDIR);
        }
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(TEXT.len());
        let n = buf.len().min(TEXT.len() - start);
        buf[..n].copy_from_slice(&TEXT[start..start + n]);
        Ok(n)
    }

    fn readdir(
        &self,
        _: &Context<'_>,
        nodeid: NodeId,
        _: FileHandle,
        offset: u64,
        out: &mut DirFiller<'_, '_>,
    ) -> Result<()> {
        if nodeid != NodeId::ROOT {
            return Err(Errno::ENOTDIR);
        }
        let entries =
            [(1, libc::DT_DIR, "."), (1, libc::DT_DIR, ".."), (2, libc::DT_REG, "hello.txt")];
        // Each entry's offset is where the listing goes on after it.
        for (next, (ino, typ, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if !out.add(ino, next as u64 + 1, u32::from(typ), OsStr::new(name)) {
                break;
            }
        }
        Ok(())
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mountpoint: PathBuf = std::env::args_os().nth(1).ok_or("usage: hello MOUNTPOINT")?.into();
    let options =
        MountOptions { fsname: Some("hello".into()), read_only: true, ..MountOptions::default() };
    let channel = fuse_server::mount(&mountpoint, &options, Arc::new(NoCustody))?;
    let session = Session::start(Hello, channel, SessionConfig::default())?;
    let _unmount = fuse_server::unmount_on_signal(&mountpoint)?;
    session.run()?;
    Ok(())
}
