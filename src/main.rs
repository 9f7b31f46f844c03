//! The `utskick` binary: parse the command line, run, exit with the contract's code.

use clap::Parser;

/// Rendering a large mailing allocates many small values; mimalloc keeps that fast.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = utskick::cli::Cli::parse();
    utskick::run(cli).into()
}
