//! The command line as operators expect it: `--help`, `--version`, and errors that say each
//! thing once, with what to do.

mod common;

use std::process::{Command, Output};

use common::{BIN, Keeper, Mounted};

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run passthroughfs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_goes_to_stdout_with_every_option_and_exits_0() {
    for flag in ["--help", "-h"] {
        let out = run(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", text(&out.stderr));
        let help = text(&out.stdout);
        assert!(out.stderr.is_empty(), "{flag} wrote to stderr: {}", text(&out.stderr));
        assert!(help.contains("SOURCE MOUNTPOINT"), "{flag}: {help}");
        for option in ["allow_other", "tag=NAME", "keeper=SOCKET", "inode_file=PATH", "nofail"] {
            assert!(help.contains(option), "{flag} does not list {option}: {help}");
        }
    }
}

#[test]
fn version_goes_to_stdout_and_exits_0() {
    for flag in ["--version", "-V"] {
        let out = run(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("passthroughfs {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn the_man_page_and_completions_print_for_a_packaging_script() {
    let out = run(&["--generate-man"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(".TH passthroughfs 8"));
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["--generate-completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("passthroughfs"), "{shell}");
    }
}

#[test]
fn bad_options_say_what_is_wrong_and_how_it_goes() {
    let usage = "usage: passthroughfs [-f] [-d] [-o OPTION[,OPTION...]] SOURCE MOUNTPOINT\n\
                 Try 'passthroughfs --help' for the options.\n";
    for (args, what) in [
        (&["-o", "frobnicate", "/a", "/b"][..], "unexpected argument \"-o frobnicate\""),
        (&["/a", "/b", "-othreads=0"][..], "bad value for option threads: \"0\""),
        (&["/a"][..], "missing MOUNTPOINT"),
        (&["--frob", "/a", "/b"][..], "unexpected argument \"--frob\""),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(text(&out.stderr), format!("passthroughfs: {what}\n{usage}"), "{args:?}");
        assert!(out.stdout.is_empty());
    }
}

/// Runs `passthroughfs ARGS` (daemonizing unless `-f` is among them) without RUST_LOG, so that
/// stderr holds what an operator sees and nothing else.
fn run_quiet(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN).args(args).env_remove("RUST_LOG").output().expect("run passthroughfs")
}

#[test]
fn a_missing_mountpoint_is_said_once_with_what_to_do() {
    let m = Mounted::dirs();
    let missing = m.dir.path().join("missing");
    // Daemonizing: the child's report is printed by the parent alone.
    for foreground in [false, true] {
        let mut args = vec![m.source.as_os_str(), missing.as_os_str()];
        if foreground {
            args.insert(0, "-f".as_ref());
        }
        let out = run_quiet(&args);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            text(&out.stderr),
            format!(
                "passthroughfs: mountpoint {0}: No such file or directory (os error 2)\n\
                 hint: create it first: mkdir -p {0}\n",
                missing.display()
            ),
            "foreground: {foreground}"
        );
    }
}

#[test]
fn a_missing_source_is_said_once() {
    let m = Mounted::dirs();
    let missing = m.dir.path().join("missing");
    let out = run_quiet(&[missing.as_os_str(), m.mountpoint.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "passthroughfs: source {}: No such file or directory (os error 2)\n",
            missing.display()
        )
    );
    assert!(!m.is_mounted());
}

#[test]
fn a_mountpoint_that_is_not_a_directory_is_refused_before_mounting() {
    let m = Mounted::dirs();
    let file = m.dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let out = run_quiet(&[m.source.as_os_str(), file.as_os_str()]);
    let mounted = fuse_transport::is_fuse_mount(&file);
    if mounted {
        let _ = fuse_transport::force_unmount(&file);
    }
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!("passthroughfs: mountpoint {} is not a directory\n", file.display())
    );
    assert!(!mounted, "a directory was mounted on a file");
}

#[test]
fn an_unreachable_keeper_with_nokeeper_start_is_said_once_with_what_to_do() {
    let m = Mounted::dirs();
    let socket = m.dir.path().join("no-keeper.sock");
    let options = format!("tag=t,nokeeper_start,keeper={}", socket.display());
    let out = run_quiet(&[
        "-o".as_ref(),
        options.as_ref(),
        m.source.as_os_str(),
        m.mountpoint.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "passthroughfs: no keeper answered: cannot connect to the keeper at {}: No such \
             file or directory (os error 2)\nhint: start the keeper (fuse-keeper serve, or \
             systemctl start fuse-keeper), or leave out nokeeper_start to have passthroughfs \
             start one\n",
            socket.display()
        )
    );
    assert!(!m.is_mounted());
}

#[test]
fn a_recoverable_mount_of_a_file_says_which_step_failed_once() {
    let m = Mounted::dirs();
    let keeper = Keeper::start(m.dir.path());
    let file = m.dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let options = format!("tag=t,keeper={}", keeper.socket.display());
    let out =
        run_quiet(&["-o".as_ref(), options.as_ref(), file.as_os_str(), m.mountpoint.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "passthroughfs: the filesystem: opening source {}: Not a directory (os error 20)\n",
            file.display()
        )
    );
    assert!(!m.is_mounted());
}
