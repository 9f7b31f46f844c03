//! The command line as clap types, and nothing else: raw values the operator typed.
//! `Config::load` and the commands turn them into checked values (ripgrep's low/high args).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Notify every customer affected by a personal-data breach by email.
///
/// The usual order: `init` a folder, edit config.toml, the CSV and the templates, `preview`
/// and read the messages, `check` the relay, `send --test-to` yourself, `send`, then
/// `status`, `bounces` and `retry` until everyone is notified.
#[derive(Debug, Parser)]
#[command(
    name = "utskick",
    version,
    about,
    long_about,
    max_term_width = 100,
    after_help = "Example:\n  utskick init nektab-2023-10 && cd nektab-2023-10\n  utskick preview && utskick check\n  utskick send --test-to me@example.se && utskick send\n\nEvery command has an example in its --help, e.g. utskick send --help."
)]
pub struct Cli {
    /// Options given before the command.
    #[command(flatten)]
    pub before: Common,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The options of the commands that read a mailing's config: accepted before the command
/// (`utskick -v send`) and after it (`utskick send -v`), and shown only where they mean
/// something (not on `init`, `completions` or `man`).
#[derive(Debug, Clone, Default, Args)]
pub struct Common {
    /// The config file (default: config.toml); paths inside it are relative to its folder.
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print less: only errors and the final summary.
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more (-v: each delivery; -vv: the SMTP dialogue, secrets redacted).
    #[arg(long, short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Cli {
    /// The options in force: those after the command win over those before it.
    pub fn common(&self) -> Common {
        let after = match &self.command {
            Command::Preview(a) => Some(&a.common),
            Command::Check(a) => Some(&a.common),
            Command::Send(a) => Some(&a.common),
            Command::Status(a) => Some(&a.common),
            Command::Bounces(a) => Some(&a.common),
            Command::Retry(a) => Some(&a.common),
            Command::Init(_) | Command::Completions(_) | Command::Man(_) => None,
        };
        let before = &self.before;
        match after {
            None => before.clone(),
            Some(after) => Common {
                config: after.config.clone().or_else(|| before.config.clone()),
                quiet: after.quiet || before.quiet,
                verbose: after.verbose.saturating_add(before.verbose),
            },
        }
    }

    /// The config file in force.
    pub fn config_path(&self) -> PathBuf {
        self.common()
            .config
            .unwrap_or_else(|| PathBuf::from("config.toml"))
    }
}

/// The commands, in the order an operator uses them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a ready config, templates and example CSV into a new folder.
    #[command(
        after_help = "Example:\n  utskick init incident-2026\n  cd incident-2026 && utskick preview"
    )]
    Init(InitArgs),

    /// Validate every row, render every message and write them to a folder to read; sends nothing.
    #[command(after_help = "Example:\n  utskick preview --out /tmp/granskning --limit 20")]
    Preview(PreviewArgs),

    /// Preflight, then connect and log in to the relay without sending; look up the From
    /// domain's SPF, DKIM and DMARC records.
    #[command(
        after_help = "Examples:\n  UTSKICK_SMTP_PASSWORD=... utskick check\n  utskick check --verify ~/Downloads/testmeddelande.eml"
    )]
    Check(CheckArgs),

    /// Deliver the notice to every recipient not yet sent.
    #[command(
        after_help = "Examples:\n  utskick send --test-to me@example.se --limit 3\n  utskick send\n  utskick send --yes   # unattended, no question asked"
    )]
    Send(SendArgs),

    /// Show where the mailing stands, from the journal and the CSV.
    #[command(
        after_help = "Examples:\n  utskick status\n  utskick status --failed-csv brev.csv --report utskick-rapport.md"
    )]
    Status(StatusArgs),

    /// Book the delivery reports (bounces) that came back after the relay accepted a message.
    #[command(
        after_help = "Examples:\n  utskick bounces ~/Downloads/bounces.mbox\n  utskick bounces --imap --move-to Processed"
    )]
    Bounces(BouncesArgs),

    /// Deliver again to recipients whose delivery failed transiently or is unknown.
    #[command(
        after_help = "Examples:\n  utskick retry\n  utskick retry --permanent   # after correcting addresses in the CSV"
    )]
    Retry(RetryArgs),

    /// Print shell completions.
    #[command(after_help = "Example:\n  utskick completions bash > /etc/bash_completion.d/utskick")]
    Completions(CompletionsArgs),

    /// Print the man page (roff), or write one page per command into a folder.
    #[command(
        after_help = "Examples:\n  utskick man | man -l -\n  utskick man --dir /usr/local/share/man/man1   # utskick.1, utskick-send.1, ..."
    )]
    Man(ManArgs),
}

/// `init [DIR]`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The new folder (must not exist or be empty).
    #[arg(default_value = "utskick")]
    pub dir: PathBuf,
}

/// `preview`
#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub common: Common,

    /// Where to write the messages (default: preview/ beside the config).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Write only the first N messages (every row is still validated and rendered).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,

    /// Leave invalid rows out (listed) instead of stopping.
    #[arg(long)]
    pub skip_invalid: bool,

    /// Write one message per variant of the notice instead of one per recipient.
    #[arg(long)]
    pub variants: bool,
}

/// `send`
#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub common: Common,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Deliver to at most N recipients (in CSV order).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,

    /// Render the first N (default 1) messages and deliver them to ADDR only, as a test.
    #[arg(long, value_name = "ADDR")]
    pub test_to: Option<String>,

    /// Leave invalid rows out (listed) instead of stopping.
    #[arg(long)]
    pub skip_invalid: bool,

    /// Send even though the templates differ from those of earlier runs.
    #[arg(long)]
    pub allow_changed_templates: bool,
}

/// `retry`
#[derive(Debug, Args)]
pub struct RetryArgs {
    #[command(flatten)]
    pub common: Common,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Also redeliver permanent failures and bounces (after correcting their addresses).
    #[arg(long)]
    pub permanent: bool,

    /// Send even though the templates differ from those of earlier runs.
    #[arg(long)]
    pub allow_changed_templates: bool,
}

/// `status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,

    /// Write every recipient not delivered, with all CSV columns, to PATH (for letters).
    #[arg(long, value_name = "PATH")]
    pub failed_csv: Option<PathBuf>,

    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,

    /// Write a Markdown record of the mailing, without personal data, to PATH.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
}

/// `bounces`
#[derive(Debug, Args)]
pub struct BouncesArgs {
    #[command(flatten)]
    pub common: Common,

    /// mbox files, Maildirs or folders of .eml files.
    #[arg(value_name = "SOURCE", required_unless_present = "imap")]
    pub sources: Vec<PathBuf>,

    /// Read the IMAP mailbox of the config's [bounces] section.
    #[arg(long)]
    pub imap: bool,

    /// With --imap: move the processed reports into FOLDER (read-only otherwise).
    #[arg(long, value_name = "FOLDER", requires = "imap")]
    pub move_to: Option<String>,
}

/// `check`
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub common: Common,

    /// Verify a test message as received (saved .eml): its DKIM signature against DNS, and
    /// what the receiving server wrote in Authentication-Results (spf, dkim, dmarc).
    #[arg(long, value_name = "FILE.eml")]
    pub verify: Option<PathBuf>,
}

/// `man`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write utskick.1 and one page per command (utskick-send.1, ...) into DIR instead of
    /// printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `completions SHELL`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
