//! `/proc/self/mountinfo` parsing: the way to learn about a FUSE mount without touching it (a
//! `stat` on the mountpoint of a dead server blocks).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// Where the kernel shows this process's mounts.
pub const MOUNTINFO_PATH: &str = "/proc/self/mountinfo";

/// One line of `/proc/<pid>/mountinfo` (see proc_pid_mountinfo(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfoEntry {
    /// Field 1: unique mount id.
    pub mount_id: u32,
    /// Field 2: id of the parent mount.
    pub parent_id: u32,
    /// Field 3, before the colon.
    pub major: u32,
    /// Field 3, after the colon.
    pub minor: u32,
    /// Field 4: root of the mount within its filesystem (unescaped).
    pub root: PathBuf,
    /// Field 5: mount point relative to the process's root (unescaped).
    pub mount_point: PathBuf,
    /// Field 6: per-mount options.
    pub mount_options: String,
    /// Filesystem type after the `-` separator, e.g. `fuse`, `fuse.sshfs`, `fusectl`.
    pub fstype: String,
    /// Mount source (unescaped), e.g. the `fsname`.
    pub source: String,
    /// Per-superblock options.
    pub super_options: String,
}

impl MountInfoEntry {
    /// `fuse`, `fuseblk`, `fuse.<subtype>` or `fuseblk.<subtype>` (not `fusectl`).
    pub fn is_fuse(&self) -> bool {
        is_fuse_fstype(&self.fstype)
    }

    /// The kernel's `dev_t` of the superblock (`MKDEV(major, minor)`, i.e. `major << 20 | minor`).
    /// This is the name of the connection's directory in `/sys/fs/fuse/connections`; for a
    /// `fuse` mount (anonymous device, major 0) it is the minor.
    pub fn kernel_dev(&self) -> u32 {
        (self.major << 20) | self.minor
    }
}

/// True for the filesystem types of FUSE mounts.
pub fn is_fuse_fstype(fstype: &str) -> bool {
    fstype == "fuse"
        || fstype == "fuseblk"
        || fstype.starts_with("fuse.")
        || fstype.starts_with("fuseblk.")
}

/// Undo the kernel's octal escaping (`\040` space, `\011` tab, `\012` newline, `\134` backslash).
/// A backslash not followed by three octal digits is kept as is.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() {
            let digits = &field[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

fn parse_line(line: &[u8]) -> Option<MountInfoEntry> {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty()).peekable();
    let num = |f: &[u8]| std::str::from_utf8(f).ok()?.parse::<u32>().ok();
    let mount_id = num(fields.next()?)?;
    let parent_id = num(fields.next()?)?;
    let devno = fields.next()?;
    let colon = devno.iter().position(|&b| b == b':')?;
    let major = num(&devno[..colon])?;
    let minor = num(&devno[colon + 1..])?;
    let root = PathBuf::from(OsString::from_vec(unescape(fields.next()?)));
    let mount_point = PathBuf::from(OsString::from_vec(unescape(fields.next()?)));
    let mount_options = String::from_utf8_lossy(fields.next()?).into_owned();
    // Optional fields up to the "-" separator.
    loop {
        if fields.next()? == b"-" {
            break;
        }
    }
    let fstype = String::from_utf8_lossy(&unescape(fields.next()?)).into_owned();
    let source = String::from_utf8_lossy(&unescape(fields.next()?)).into_owned();
    let super_options =
        fields.next().map(|f| String::from_utf8_lossy(f).into_owned()).unwrap_or_default();
    Some(MountInfoEntry {
        mount_id,
        parent_id,
        major,
        minor,
        root,
        mount_point,
        mount_options,
        fstype,
        source,
        super_options,
    })
}

/// Parse the text of a mountinfo file, in order (later entries are mounted on top of earlier
/// ones at the same mount point). Malformed lines are skipped.
pub fn parse_mountinfo(text: impl AsRef<[u8]>) -> Vec<MountInfoEntry> {
    text.as_ref()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|line| {
            let entry = parse_line(line);
            if entry.is_none() {
                tracing::debug!(line = %String::from_utf8_lossy(line), "skipping malformed mountinfo line");
            }
            entry
        })
        .collect()
}

/// Read and parse `/proc/self/mountinfo`.
pub fn read_mountinfo() -> Result<Vec<MountInfoEntry>> {
    let text = std::fs::read(MOUNTINFO_PATH).map_err(Error::ReadMountinfo)?;
    Ok(parse_mountinfo(text))
}

/// Make `path` absolute and remove `.`, `..` and repeated slashes lexically, without touching
/// the filesystem.
pub(crate) fn lexical_absolute(path: &Path) -> Result<PathBuf> {
    let joined;
    let path = if path.is_absolute() {
        path
    } else {
        let cwd = std::env::current_dir()
            .map_err(|error| Error::CurrentDir { path: path.to_owned(), error })?;
        joined = cwd.join(path);
        &joined
    };
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
        }
    }
    Ok(out)
}

/// `path` made absolute with its directory resolved (symlinks, `..`) but not its last
/// component, which is never looked up: a mount whose server is dead or not yet attached
/// (the keeper's, before its server comes back) would block a lookup until one serves. A
/// path with no last component to spare (`/`, one ending in `..`) is resolved whole. The
/// error is the one from resolving the directory (missing, not searchable...).
pub fn resolve_mountpoint(path: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => Ok(std::fs::canonicalize(dir)?.join(name)),
        _ => std::fs::canonicalize(&abs),
    }
}

/// The last (topmost) entry whose mount point is exactly `mount_point` (already absolute and
/// normalized).
pub fn find_top_mount<'a>(
    entries: &'a [MountInfoEntry],
    mount_point: &Path,
) -> Option<&'a MountInfoEntry> {
    entries
        .iter()
        .rev()
        .find(|e| e.mount_point.as_os_str().as_bytes() == mount_point.as_os_str().as_bytes())
}

/// Find the top mount at `mountpoint` in `entries`: first by the lexically normalized path (no
/// filesystem access at all), then, if that fails, with the parent directory canonicalized
/// (symlinks in the parent, e.g. `/tmp` -> `/private/tmp`). The mountpoint itself is never
/// `stat`ed; only its parent is resolved, and only in the fallback.
pub(crate) fn lookup<'a>(
    entries: &'a [MountInfoEntry],
    mountpoint: &Path,
) -> Result<Option<&'a MountInfoEntry>> {
    let normalized = lexical_absolute(mountpoint)?;
    if let Some(e) = find_top_mount(entries, &normalized) {
        return Ok(Some(e));
    }
    if let (Some(parent), Some(name)) = (normalized.parent(), normalized.file_name())
        && let Ok(parent) = std::fs::canonicalize(parent)
    {
        let resolved = parent.join(name);
        if resolved != normalized {
            return Ok(find_top_mount(entries, &resolved));
        }
    }
    Ok(None)
}

/// The topmost entry of `/proc/self/mountinfo` at `mountpoint`, if anything is mounted there.
pub fn mount_entry(mountpoint: &Path) -> Result<Option<MountInfoEntry>> {
    let entries = read_mountinfo()?;
    Ok(lookup(&entries, mountpoint)?.cloned())
}

/// True if the topmost mount at `mountpoint` is a FUSE mount (per `/proc/self/mountinfo`; the
/// mountpoint is not touched). Any error reads as `false`.
pub fn is_fuse_mount(mountpoint: &Path) -> bool {
    matches!(mount_entry(mountpoint), Ok(Some(e)) if e.is_fuse())
}

/// The connection number of the FUSE mount at `mountpoint` within the given mountinfo text: the
/// kernel `dev_t` of the topmost mount there (its minor for `fuse` mounts).
pub fn connection_id_in(mountinfo: impl AsRef<[u8]>, mountpoint: &Path) -> Result<u32> {
    let entries = parse_mountinfo(mountinfo);
    let entry = lookup(&entries, mountpoint)?
        .ok_or_else(|| Error::NotMounted { path: mountpoint.to_owned() })?;
    if !entry.is_fuse() {
        return Err(Error::NotFuseMount {
            path: mountpoint.to_owned(),
            fstype: entry.fstype.clone(),
        });
    }
    Ok(entry.kernel_dev())
}

/// The connection number N of the FUSE mount at `mountpoint` (the name of its directory in
/// `/sys/fs/fuse/connections`), found in `/proc/self/mountinfo` without `stat`ing the mountpoint.
pub fn connection_id(mountpoint: &Path) -> Result<u32> {
    let text = std::fs::read(MOUNTINFO_PATH).map_err(Error::ReadMountinfo)?;
    connection_id_in(text, mountpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
40 22 0:35 / /sys/fs/fuse/connections rw,nosuid,nodev,noexec,relatime shared:16 - fusectl fusectl rw
101 28 0:52 / /mnt/my\\040dir rw,nosuid,nodev,relatime shared:60 - fuse.sshfs user@host:/a\\040b rw,user_id=1000,group_id=1000
102 28 0:53 / /mnt/plain rw,relatime - fuse passthroughfs rw,user_id=0,group_id=0,allow_other
103 102 0:54 / /mnt/plain rw,relatime - fuse.other other rw,user_id=0,group_id=0
104 28 0:55 / /mnt/tab\\011and\\134slash rw master:3 propagate_from:2 unbindable - tmpfs tmpfs rw
105 28 8:17 / /mnt/blk rw,relatime - fuseblk /dev/sdb1 rw,user_id=0,group_id=0
garbage line
";

    #[test]
    fn parses_all_wellformed_lines() {
        let entries = parse_mountinfo(FIXTURE);
        assert_eq!(entries.len(), 8);
        let sshfs = &entries[3];
        assert_eq!(sshfs.mount_id, 101);
        assert_eq!(sshfs.parent_id, 28);
        assert_eq!((sshfs.major, sshfs.minor), (0, 52));
        assert_eq!(sshfs.root, Path::new("/"));
        assert_eq!(sshfs.mount_point, Path::new("/mnt/my dir"));
        assert_eq!(sshfs.fstype, "fuse.sshfs");
        assert_eq!(sshfs.source, "user@host:/a b");
        assert_eq!(sshfs.mount_options, "rw,nosuid,nodev,relatime");
        assert_eq!(sshfs.super_options, "rw,user_id=1000,group_id=1000");
        assert!(sshfs.is_fuse());
        assert!(!entries[2].is_fuse(), "fusectl is not a FUSE mount");
        assert!(!entries[0].is_fuse());
    }

    #[test]
    fn optional_fields_and_escapes() {
        let entries = parse_mountinfo(FIXTURE);
        let tmpfs = &entries[6];
        assert_eq!(tmpfs.mount_point, Path::new("/mnt/tab\tand\\slash"));
        assert_eq!(tmpfs.fstype, "tmpfs");
        assert_eq!(tmpfs.mount_options, "rw");
    }

    #[test]
    fn unescape_cases() {
        assert_eq!(unescape(b"a\\040b"), b"a b");
        assert_eq!(unescape(b"\\012"), b"\n");
        assert_eq!(unescape(b"\\134"), b"\\");
        assert_eq!(unescape(b"trailing\\"), b"trailing\\");
        assert_eq!(unescape(b"short\\04"), b"short\\04");
        assert_eq!(unescape(b"not\\999octal"), b"not\\999octal");
        assert_eq!(unescape(b"\\040\\040"), b"  ");
    }

    #[test]
    fn connection_id_of_escaped_mountpoint() {
        assert_eq!(connection_id_in(FIXTURE, Path::new("/mnt/my dir")).unwrap(), 52);
        // Lexical normalization, no filesystem access.
        assert_eq!(connection_id_in(FIXTURE, Path::new("/mnt//./x/../my dir/")).unwrap(), 52);
    }

    #[test]
    fn connection_id_takes_top_of_stack() {
        assert_eq!(connection_id_in(FIXTURE, Path::new("/mnt/plain")).unwrap(), 54);
        let entries = parse_mountinfo(FIXTURE);
        let top = find_top_mount(&entries, Path::new("/mnt/plain")).unwrap();
        assert_eq!(top.mount_id, 103);
    }

    #[test]
    fn connection_id_of_fuseblk_is_kernel_dev() {
        assert_eq!(connection_id_in(FIXTURE, Path::new("/mnt/blk")).unwrap(), (8 << 20) | 17);
    }

    #[test]
    fn connection_id_errors() {
        assert!(matches!(
            connection_id_in(FIXTURE, Path::new("/mnt/absent-for-test")),
            Err(Error::NotMounted { .. })
        ));
        assert!(matches!(
            connection_id_in(FIXTURE, Path::new("/sys/fs/fuse/connections")),
            Err(Error::NotFuseMount { .. })
        ));
        assert!(matches!(
            connection_id_in(FIXTURE, Path::new("/mnt/my")),
            Err(Error::NotMounted { .. })
        ));
    }

    #[test]
    fn fuse_fstypes() {
        assert!(is_fuse_fstype("fuse"));
        assert!(is_fuse_fstype("fuse.passthroughfs"));
        assert!(is_fuse_fstype("fuseblk"));
        assert!(!is_fuse_fstype("fusectl"));
        assert!(!is_fuse_fstype("fuse2"));
        assert!(!is_fuse_fstype("ext4"));
    }

    #[test]
    fn lexical_absolute_normalizes() {
        assert_eq!(lexical_absolute(Path::new("/a/./b//c/../d/")).unwrap(), Path::new("/a/b/d"));
        assert_eq!(lexical_absolute(Path::new("/..")).unwrap(), Path::new("/"));
        assert!(lexical_absolute(Path::new("rel")).unwrap().is_absolute());
    }

    #[test]
    fn a_mountpoint_is_resolved_by_its_directory() {
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(resolve_mountpoint(Path::new("mnt")).unwrap(), cwd.join("mnt"));
        let pid = std::process::id();
        let own = resolve_mountpoint(Path::new("/proc/self/x")).unwrap();
        assert_eq!(own, PathBuf::from(format!("/proc/{pid}/x")));
        assert_eq!(resolve_mountpoint(Path::new("/")).unwrap(), Path::new("/"));
        assert_eq!(resolve_mountpoint(Path::new("/proc/self/..")).unwrap(), Path::new("/proc"));
        assert!(resolve_mountpoint(Path::new("/nonexistent-dir-of-a-test/mnt")).is_err());
    }

    #[test]
    fn real_mountinfo_parses() {
        let entries = read_mountinfo().unwrap();
        assert!(entries.iter().any(|e| e.mount_point == Path::new("/")));
    }
}
