//! The `blockhook` binary: parse the command line, run it, turn the result into an exit code.
//!
//! Everything the server does lives in `blockhook-server`; this crate only wires commands to it.
//! Exit codes: 0 success, 1 a verification was rejected (`verify`), 2 any other error.

mod cli;

use std::process::ExitCode;

use clap::Parser;

// Decision (docs/decisions.md): mimalloc instead of the system allocator. Profiles of the
// delivery path showed glibc malloc/free and its consolidation at ~16% of all CPU, and the
// process's RSS grew with fragmentation under a backlog.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("blockhook: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
