//! The command line as operators expect it: `--help`, `--version`, and errors that say each
//! thing once, with what to do.

mod common;

use std::process::{Command, Output};

use common::BIN;

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
