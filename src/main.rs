//! The `utskick` binary: parse the command line, run, exit with the contract's code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = utskick::cli::Cli::parse();
    utskick::run(cli).into()
}
