//! What the operator sees on stderr and stdout: errors as one line each, warnings, the
//! summary; colour only on a terminal and never with `NO_COLOR`; `-q` and `-v`.

use std::io::{IsTerminal, Write};

/// Output settings for one invocation.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// `-q`: only errors and the final summary.
    pub quiet: bool,
    /// `-v` count.
    pub verbose: u8,
    /// Colour on stderr.
    pub color: bool,
    /// Whether stderr is a terminal (progress bar, prompts).
    pub terminal: bool,
}

impl Output {
    /// From the flags and the environment.
    pub fn new(quiet: bool, verbose: u8) -> Output {
        let terminal = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Output {
            quiet,
            verbose,
            color: terminal && !no_color,
            terminal,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// An error line as is (already naming file and line).
    pub fn error_line(&self, line: &str) {
        eprintln!("{line}");
    }

    /// `error: ...`, one line per line of the message.
    pub fn error(&self, message: &str) {
        for line in message.lines() {
            eprintln!("{} {line}", self.paint("1;31", "error:"));
        }
    }

    /// A warning (already prefixed or not).
    pub fn warn(&self, message: &str) {
        if self.quiet {
            return;
        }
        let text = message.strip_prefix("warning: ").unwrap_or(message);
        eprintln!("{} {text}", self.paint("33", "warning:"));
    }

    /// Progress information.
    pub fn info(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// Detail shown with -v.
    pub fn detail(&self, message: &str) {
        if self.verbose > 0 && !self.quiet {
            eprintln!("{message}");
        }
    }

    /// The final summary, always shown, on stdout.
    pub fn summary(&self, message: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{message}");
    }
}
