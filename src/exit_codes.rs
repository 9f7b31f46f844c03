//! The process exit codes of the contract, as one small typed enum so that every command
//! maps its outcome the same way and scripts can rely on the numbers.

/// How a command ended, as the operator's shell sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Every recipient the run took on is now `sent` (or the command simply succeeded).
    Success,
    /// Fatal: cannot connect, authentication refused, journal locked, disk full.
    Fatal,
    /// Bad invocation, config, CSV, template or journal: nothing was sent.
    BadInput,
    /// The run ended normally but some recipients it took on are not `sent`.
    Incomplete,
    /// Interrupted by Ctrl-C.
    Interrupted,
}

impl ExitCode {
    /// The number the process exits with.
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Fatal => 1,
            ExitCode::BadInput => 2,
            ExitCode::Incomplete => 3,
            ExitCode::Interrupted => 130,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        // Every code fits in a u8.
        std::process::ExitCode::from(code.code() as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::ExitCode;

    #[test]
    fn codes_match_the_contract() {
        assert_eq!(ExitCode::Success.code(), 0);
        assert_eq!(ExitCode::Fatal.code(), 1);
        assert_eq!(ExitCode::BadInput.code(), 2);
        assert_eq!(ExitCode::Incomplete.code(), 3);
        assert_eq!(ExitCode::Interrupted.code(), 130);
    }

    #[test]
    fn codes_are_distinct() {
        let all = [
            ExitCode::Success,
            ExitCode::Fatal,
            ExitCode::BadInput,
            ExitCode::Incomplete,
            ExitCode::Interrupted,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.code(), b.code());
            }
        }
    }
}
