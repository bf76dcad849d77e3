//! `fuse-keeper`: the keeper daemon (`serve`) and its admin commands (`ls`, `abort`, `umount`).

mod cli;
mod table;

fn main() -> std::process::ExitCode {
    cli::main()
}
