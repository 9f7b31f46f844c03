//! utskick: notify every customer affected by a personal-data breach by email, with a
//! delivery journal that stays true through crashes, Ctrl-C, dropped connections and a
//! relay's quota. `run` is the whole program; `main.rs` only maps its result to an exit code.

pub mod archive;
pub mod bounces;
pub mod check;
pub mod cli;
pub mod config;
pub mod deliverability;
pub mod exit_codes;
pub mod flowed;
pub mod init;
pub mod journal;
pub mod mailing;
pub mod message;
pub mod output;
pub mod preview;
pub mod private;
pub mod progress;
pub mod reach;
pub mod recipients;
pub mod relay;
pub mod render;
pub mod secrets;
pub mod send;
pub mod status;
pub mod text;
pub mod tls;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::exit_codes::ExitCode;
use crate::output::Output;

/// Why a command could not do its job, by the exit code it leads to.
#[derive(Debug, thiserror::Error)]
pub enum Fail {
    /// Bad invocation, config, CSV, template or journal: nothing was sent (exit 2).
    #[error("{0:#}")]
    Input(anyhow::Error),
    /// Cannot go on: connection, authentication, lock, disk (exit 1).
    #[error("{0:#}")]
    Fatal(anyhow::Error),
}

impl Fail {
    /// The exit code it leads to.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Fail::Input(_) => ExitCode::BadInput,
            Fail::Fatal(_) => ExitCode::Fatal,
        }
    }
}

/// Turns an `anyhow::Result` into a `Fail` of the right kind.
pub trait ResultExt<T> {
    /// The error is the operator's input (exit 2).
    fn input(self) -> Result<T, Fail>;
    /// The error is fatal (exit 1).
    fn fatal(self) -> Result<T, Fail>;
}

impl<T> ResultExt<T> for anyhow::Result<T> {
    fn input(self) -> Result<T, Fail> {
        self.map_err(Fail::Input)
    }
    fn fatal(self) -> Result<T, Fail> {
        self.map_err(Fail::Fatal)
    }
}

/// Runs the parsed command line and returns the exit code; errors are printed here.
pub fn run(cli: Cli) -> ExitCode {
    // A file-size limit (RLIMIT_FSIZE) must end a write with an error that we report, not
    // kill the process in the middle of it.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let common = cli.common();
    let out = Output::new(common.quiet, common.verbose);
    init_tracing(common.verbose, out.color);
    match dispatch(cli, &out) {
        Ok(code) => code,
        Err(fail) => {
            out.error(&format!("{fail}"));
            fail.exit_code()
        }
    }
}

/// Writes generated text to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<ExitCode, Fail> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::Success),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::Success),
        Err(e) => Err(Fail::Fatal(anyhow::anyhow!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// `-vv` shows the SMTP dialogue as tracing events on stderr (commands and reply codes;
/// never AUTH payloads or message bodies: lettre's own tracing is not enabled).
fn init_tracing(verbose: u8, color: bool) {
    let level = match verbose {
        0 | 1 => return,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .try_init();
}

fn dispatch(cli: Cli, out: &Output) -> Result<ExitCode, Fail> {
    let config = cli.config_path();
    let load = || Config::load(&config).input();
    match &cli.command {
        Command::Preview(args) => preview::run(load()?, args, out),
        Command::Send(args) => send::run_send(load()?, args, out),
        Command::Retry(args) => send::run_retry(load()?, args, out),
        Command::Status(args) => status::run(load()?, args, out),
        Command::Bounces(args) => bounces::run(load()?, args, out),
        Command::Check(args) => check::run(&config, args, out),
        Command::Init(args) => init::run(&args.dir, out),
        Command::Completions(args) => {
            let mut buf = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "utskick", &mut buf);
            write_stdout(&buf)
        }
        Command::Man(args) => match &args.dir {
            None => write_stdout(&man_page(Cli::command())?),
            Some(dir) => write_man_pages(dir, out),
        },
    }
}

/// One command's man page (roff).
fn man_page(command: clap::Command) -> Result<Vec<u8>, Fail> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut buf)
        .map_err(|e| Fail::Fatal(anyhow::anyhow!("cannot render the man page: {e}")))?;
    Ok(buf)
}

/// `utskick.1` and one page per command (`utskick-send.1`, ...), which the main page's list
/// of commands refers to.
fn write_man_pages(dir: &std::path::Path, out: &Output) -> Result<ExitCode, Fail> {
    use anyhow::Context;
    let mut root = Cli::command();
    // Built, so that each command carries the name the main page lists it under
    // (utskick-send).
    root.build();
    let mut pages = vec![("utskick.1".to_string(), root.clone())];
    for sub in root.get_subcommands() {
        let name = sub
            .get_display_name()
            .map_or_else(|| format!("utskick-{}", sub.get_name()), str::to_string);
        pages.push((format!("{name}.1"), sub.clone()));
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
        .fatal()?;
    for (file, command) in &pages {
        let path = dir.join(file);
        std::fs::write(&path, man_page(command.clone())?)
            .with_context(|| format!("cannot write {}", path.display()))
            .fatal()?;
    }
    out.info(&format!(
        "wrote utskick.1 and {} command pages to {}",
        pages.len() - 1,
        dir.display()
    ));
    Ok(ExitCode::Success)
}
