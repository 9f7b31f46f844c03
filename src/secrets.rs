//! Secrets (the relay password, the OAuth2 token, the IMAP password) come from the
//! environment, a command or a prompt on the terminal, never from config.toml, and are held
//! in `SecretString` so they never reach output, the journal or a panic message.

use std::io::IsTerminal;
use std::process::{Command, Stdio};

use anyhow::{Result, anyhow, bail};
use secrecy::SecretString;

use crate::config::SecretSource;

/// Reads a secret; `what` names it in errors and the prompt ("SMTP password").
pub fn read(source: &SecretSource, what: &str) -> Result<SecretString> {
    match source {
        SecretSource::Env(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
            _ => bail!(
                "the {what} is read from the environment variable {var}, which is not set: export {var}=... (or set password_command in config.toml)"
            ),
        },
        SecretSource::Command(cmd) => run_command(cmd, what),
        SecretSource::Prompt => {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "no {what}: set password_env or password_command in config.toml (there is no terminal to ask on)"
                );
            }
            let v = rpassword::prompt_password(format!("{what}: "))
                .map_err(|e| anyhow!("cannot read the {what} from the terminal: {e}"))?;
            if v.is_empty() {
                bail!("no {what} given");
            }
            Ok(SecretString::from(v))
        }
    }
}

fn run_command(cmd: &str, what: &str) -> Result<SecretString> {
    let output = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Whatever it says on stderr may hold the secret too: never shown.
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| anyhow!("cannot run the command for the {what}: {e}"))?;
    if !output.status.success() {
        // Its output may hold part of the secret: never shown.
        bail!(
            "the command for the {what} failed ({}); its output is not shown",
            output.status
        );
    }
    let text = String::from_utf8(output.stdout)
        .map_err(|_| anyhow!("the command for the {what} printed something that is not UTF-8"))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        bail!("the command for the {what} printed nothing");
    }
    Ok(SecretString::from(secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn command_output_trimmed_and_failure_hides_output() {
        let s = read(
            &SecretSource::Command("printf 'hemligt\\n'".into()),
            "SMTP password",
        )
        .expect("reads");
        assert_eq!(s.expose_secret(), "hemligt");
        let e = read(
            &SecretSource::Command("echo hemligt; exit 3".into()),
            "SMTP password",
        )
        .unwrap_err();
        assert!(!format!("{e:#}").contains("hemligt"));
        let e = read(
            &SecretSource::Env("UTSKICK_TEST_SURELY_UNSET".into()),
            "SMTP password",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("UTSKICK_TEST_SURELY_UNSET"));
    }

    #[test]
    fn debug_of_a_secret_hides_it() {
        let s = SecretString::from("hemligt".to_string());
        assert!(!format!("{s:?}").contains("hemligt"));
    }
}
