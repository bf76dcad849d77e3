# Stock servers for the fuse-wrap tests (sourced after lib.sh and keeper_work).
# wrap_stock TARGET: sets `stock` to the server's command line (%m is its mountpoint) and
# prepares what it serves under $work: src (the tree it writes to), and, per target, what
# else it needs (an sshd of the test's own on 127.0.0.1, an overlay's lower layer, an image).
# For fuse-overlayfs, $work/replay (if there) gets the lower layer's file too.
wrap_stock() {
  local target=$1
  case "$target" in
    passthrough_ll)
      mkdir -p "$work/bin"
      gcc -O2 -o "$work/bin/$target" "/usr/share/doc/libfuse3-dev/examples/$target.c" $(pkg-config --cflags --libs fuse3)
      # clone_fd: libfuse cannot clone a socket and goes on with its threads sharing it.
      stock=("$work/bin/$target" -f -o "clone_fd,source=$work/src" %m) ;;
    passthrough|passthrough_fh)
      mkdir -p "$work/bin"
      gcc -O2 -o "$work/bin/$target" "/usr/share/doc/libfuse3-dev/examples/$target.c" $(pkg-config --cflags --libs fuse3)
      # The high-level examples serve / : a subdirectory is given with modules=subdir.
      stock=("$work/bin/$target" -f -o "modules=subdir,subdir=$work/src" %m) ;;
    sshfs)
      # Against an sshd of the test's own on 127.0.0.1 (stopped by pid when the run ends).
      # sshfs_sync: by default sshfs answers a WRITE before the SFTP server has it, and
      # what a killed sshfs had not yet sent is lost (docs/WRAPPING.md).
      start_sshd "$work/sshd"
      stock=(sshfs -f -F "$work/sshd/ssh_config" -o sshfs_sync "wrapped-sshd:$work/src" %m) ;;
    fuse-overlayfs)
      # As rootless Podman uses it: a lower layer, the upper one (the tree compared) and a
      # work directory.
      mkdir -p "$work/lower/base" "$work/ovlwork"
      echo lower > "$work/lower/base/file"
      if [ -d "$work/replay" ]; then mkdir -p "$work/replay/base"; echo lower > "$work/replay/base/file"; fi
      stock=(fuse-overlayfs -f -o "lowerdir=$work/lower,upperdir=$work/src,workdir=$work/ovlwork" %m) ;;
    gocryptfs)
      mkdir -p "$work/cipher"
      echo "a test passphrase" > "$work/passfile"
      gocryptfs -init -q -passfile "$work/passfile" "$work/cipher" > /dev/null
      stock=(gocryptfs -f -q -passfile "$work/passfile" "$work/cipher" %m) ;;
    squashfuse)
      # Read-only: an image of a tree, read back whole while the server is killed.
      mkdir -p "$work/tree"
      for i in $(seq 1 200); do head -c $(( i * 997 )) /dev/urandom > "$work/tree/f$i"; done
      mkdir -p "$work/tree/sub/deeper"; ln -s ../f1 "$work/tree/sub/link"; cp "$work/tree/f7" "$work/tree/sub/deeper/"
      mksquashfs "$work/tree" "$work/image.sqfs" -quiet -noappend > /dev/null
      stock=(squashfuse -f "$work/image.sqfs" %m) ;;
    *) echo "unknown target $target" >&2; return 2 ;;
  esac
}

# stock_pid: the child of the wrapper $PFS_PID, the stock server (none while it is being
# restarted).
stock_pid() { cat /proc/"$PFS_PID"/task/*/children 2>/dev/null | awk '{print $1; exit}'; }

# wrap_mounted MNT: waits for the fuse-wrap of $PFS_PID to mount MNT; exits the test with its
# log if it does not.
wrap_mounted() {
  wait_for "$PATIENCE_S" mounted_or_exited "$1" "$PFS_PID" || true
  mounted "$1" || { echo "fuse-wrap did not mount $1"; cat "$work/wrap.log"; exit 1; }
}

# wrap_stop MNT: unmounts MNT (aborting it if that fails) and waits for the wrapper $PFS_PID.
wrap_stop() {
  umount "$1" 2>/dev/null || teardown "$1" "$PFS_PID"
  wait "$PFS_PID" 2>/dev/null || true
  PFS_PID=
}

# wrap_mount_options MNT: the options fuse-wrap must be given to mount as the server mounted
# MNT itself (a server behind fuse-wrap mounts nothing: fuse-overlayfs as root adds
# default_permissions,suid,noatime of its own), from /proc/self/mountinfo, with a leading
# comma; fuse-wrap turns default_permissions on with allow_other as root, so it is turned off
# when the bare mount had none.
wrap_mount_options() {
  awk -v mp="$1" '$5 == mp {
      split($6, m, ","); for (i in m) f[m[i]] = 1
      for (i = 7; $i != "-"; i++) {}
      split($(i + 3), s, ","); for (j in s) f[s[j]] = 1
      out = ("default_permissions" in f) ? ",default_permissions" : ",nodefault_permissions"
      if ("ro" in f) out = out ",ro"
      if (!("nosuid" in f)) out = out ",suid"
      if (!("nodev" in f)) out = out ",dev"
      if ("noexec" in f) out = out ",noexec"
      if ("noatime" in f) out = out ",noatime"
      print out }' /proc/self/mountinfo | tail -1
}
