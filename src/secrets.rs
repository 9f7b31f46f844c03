//! Secrets (the relay password, the OAuth2 token, the IMAP password) come from the
//! environment, a command or a prompt on the terminal, never from config.toml, and are held
//! in `SecretString` so they never reach output, the journal or a panic message.
//!
//! A command is bounded in time (`[smtp] secret_command_timeout_secs`): a token command
//! stuck on a login page or a network that does not answer must not hang a mailing. An
//! OAuth2 access token lives about an hour while a mailing may take a day, so the token is
//! kept in a [`TokenCache`] that runs `token_command` again once the token is old.

use std::io::{IsTerminal, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow, bail};
use secrecy::{ExposeSecret, SecretString};

use crate::config::SecretSource;

/// How long a secret command may run unless the config says otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads a secret; `what` names it in errors and the prompt ("SMTP password"). A command
/// gets [`DEFAULT_COMMAND_TIMEOUT`].
pub fn read(source: &SecretSource, what: &str) -> Result<SecretString> {
    read_within(source, what, DEFAULT_COMMAND_TIMEOUT)
}

/// Reads a secret; a command that runs longer than `limit` is killed and is an error.
pub fn read_within(source: &SecretSource, what: &str, limit: Duration) -> Result<SecretString> {
    read_in(source, what, limit, None)
}

/// Like [`read_within`], a command running in `dir` (the config's folder, against which its
/// relative paths are read, as every path of config.toml is).
pub fn read_in(
    source: &SecretSource,
    what: &str,
    limit: Duration,
    dir: Option<&Path>,
) -> Result<SecretString> {
    match source {
        SecretSource::Env(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
            _ => bail!(
                "the {what} is read from the environment variable {var}, which is not set: export {var}=... (or set password_command in config.toml)"
            ),
        },
        SecretSource::Command(cmd) => run_command(cmd, what, limit, dir),
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

/// Runs `cmd` with `sh -c` in a process group of its own, so that a timeout kills whatever
/// it started (a `sleep`, a `curl`) and not only the shell.
fn run_command(cmd: &str, what: &str, limit: Duration, dir: Option<&Path>) -> Result<SecretString> {
    let mut command = Command::new("sh");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Whatever it says on stderr may hold the secret too: never shown.
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| anyhow!("cannot run the command for the {what}: {e}"))?;
    // Both pipes are drained while the command runs, so that it never blocks on a full one.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= limit => {
                kill_group(&mut child);
                let _ = child.wait();
                let _ = stderr.join();
                let _ = stdout.join();
                bail!(
                    "the command for the {what} ({cmd:?}) did not finish within {} s and was stopped ([smtp] secret_command_timeout_secs)",
                    limit.as_secs_f32()
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                kill_group(&mut child);
                bail!("cannot wait for the command for the {what}: {e}");
            }
        }
    };
    // The shell is gone; anything it left behind holding the pipes is stopped too.
    kill_group(&mut child);
    let output = stdout.join().unwrap_or_default();
    let _ = stderr.join();
    if !status.success() {
        // Its output may hold part of the secret: never shown.
        bail!("the command for the {what} failed ({status}); its output is not shown");
    }
    let text = String::from_utf8(output)
        .map_err(|_| anyhow!("the command for the {what} printed something that is not UTF-8"))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        bail!("the command for the {what} printed nothing");
    }
    Ok(SecretString::from(secret))
}

fn kill_group(child: &mut std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill has no memory preconditions; a negative pid names the group the
        // child leads (`process_group(0)`), which holds only what the command started.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// What a token command printed: the token and, where it said so, how long it lives.
#[derive(Debug)]
pub struct Token {
    /// The access token.
    pub secret: SecretString,
    /// `expires_in` of the JSON form.
    pub expires_in: Option<Duration>,
}

/// The JSON a token endpoint answers with (RFC 6749 §5.1), as printed by `curl`.
#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Seconds>,
}

/// `expires_in` is a number in the RFC; some endpoints send it as a string.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Text(String),
}

/// Reads a token command's output: a JSON token response
/// (`{"access_token": "...", "expires_in": 3599}`) or the bare token.
pub fn parse_token(output: SecretString) -> Result<Token> {
    let text = output.expose_secret().trim();
    if !text.starts_with('{') {
        return Ok(Token {
            secret: output,
            expires_in: None,
        });
    }
    // The error of serde would quote the text, which holds the token: never shown.
    let parsed: TokenResponse = serde_json::from_str(text).map_err(|_| {
        anyhow!(
            "token_command printed JSON without a string \"access_token\" (its output is not shown)"
        )
    })?;
    if parsed.access_token.is_empty() {
        bail!("token_command printed an empty \"access_token\"");
    }
    let expires_in = match parsed.expires_in {
        None => None,
        Some(Seconds::Number(n)) => Some(Duration::from_secs(n)),
        Some(Seconds::Text(t)) => Some(Duration::from_secs(t.trim().parse().map_err(|_| {
            anyhow!("token_command printed \"expires_in\" that is not a number of seconds")
        })?)),
    };
    Ok(Token {
        secret: SecretString::from(parsed.access_token),
        expires_in,
    })
}

/// Whether a token fetched `age` ago with `lifetime` must be fetched again before a login.
/// A little before its end (a tenth of its life, at most a minute), so that a login that
/// takes a few seconds does not present a token that expires on the way.
pub fn token_is_old(age: Duration, lifetime: Duration) -> bool {
    let margin = (lifetime / 10).min(Duration::from_secs(60));
    age + margin >= lifetime
}

/// A token handed out for one login.
#[derive(Clone)]
pub struct Lease {
    /// The token.
    pub secret: SecretString,
    /// Which fetch it came from (see [`TokenCache::refused`]).
    pub generation: u64,
    /// Never used for a login before: a refusal of it is final.
    pub fresh: bool,
}

struct Held {
    secret: SecretString,
    /// Wall-clock time, so that a workstation that slept counts the hours it slept.
    fetched: SystemTime,
    lifetime: Duration,
    generation: u64,
    refused: bool,
    /// Used for a login already: a refusal then may mean it expired early, not that it
    /// was never any good.
    leased: bool,
}

/// The OAuth2 token of `token_command`, run again when the token is older than its
/// lifetime or after the relay refused it. Shared by every connection of a run; only one
/// of them runs the command at a time.
pub struct TokenCache {
    command: String,
    dir: PathBuf,
    timeout: Duration,
    default_lifetime: Duration,
    held: tokio::sync::Mutex<Option<Held>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

const TOKEN: &str = "OAuth2 access token";

impl TokenCache {
    /// For `command`, run in `dir`; `default_lifetime` where its output says nothing
    /// (`[smtp] token_lifetime_secs`), `timeout` for each run of it.
    pub fn new(
        command: &str,
        dir: &Path,
        default_lifetime: Duration,
        timeout: Duration,
    ) -> Arc<TokenCache> {
        Arc::new(TokenCache {
            command: command.to_string(),
            dir: dir.to_path_buf(),
            timeout,
            default_lifetime,
            held: tokio::sync::Mutex::new(None),
        })
    }

    fn fetch(&self, generation: u64) -> Result<Held> {
        let token = parse_token(run_command(
            &self.command,
            TOKEN,
            self.timeout,
            Some(&self.dir),
        )?)?;
        Ok(Held {
            secret: token.secret,
            fetched: SystemTime::now(),
            lifetime: token.expires_in.unwrap_or(self.default_lifetime),
            generation,
            refused: false,
            leased: false,
        })
    }

    /// Runs the command now (before the first connection), so that a broken command is
    /// reported before anything else happens.
    pub fn prime(&self) -> Result<()> {
        let held = self.fetch(1)?;
        // A new cache has no other user: the lock is free (try_lock never blocks, so this
        // is safe inside a runtime too).
        *self
            .held
            .try_lock()
            .map_err(|_| anyhow!("the {TOKEN} is being fetched already"))? = Some(held);
        Ok(())
    }

    /// The token for a login: the one held, or a new one when it is old or was refused.
    pub async fn lease(self: &Arc<Self>) -> Result<Lease> {
        let mut held = self.held.lock().await;
        let stale = match &*held {
            None => true,
            Some(h) => {
                h.refused
                    || SystemTime::now()
                        .duration_since(h.fetched)
                        // A clock set back: the age is unknown, so fetch again.
                        .map_or(true, |age| token_is_old(age, h.lifetime))
            }
        };
        if stale {
            let generation = held.as_ref().map_or(1, |h| h.generation + 1);
            let this = self.clone();
            let new = tokio::task::spawn_blocking(move || this.fetch(generation))
                .await
                .map_err(|e| anyhow!("the command for the {TOKEN} could not be run: {e}"))??;
            *held = Some(new);
        }
        let h = held.as_mut().ok_or_else(|| anyhow!("no {TOKEN}"))?;
        let fresh = !h.leased;
        h.leased = true;
        Ok(Lease {
            secret: h.secret.clone(),
            generation: h.generation,
            fresh,
        })
    }

    /// The relay refused the token of `generation`: the next lease fetches a new one
    /// (unless another connection did already).
    pub async fn refused(&self, generation: u64) {
        if let Some(h) = self.held.lock().await.as_mut()
            && h.generation == generation
        {
            h.refused = true;
        }
    }
}

/// The relay's secret for a run: a password read once, or, for XOAUTH2 with
/// `token_command`, a token cache (its first token fetched now, so that a broken command is
/// reported before anything else happens).
pub fn smtp_secret(
    config: &crate::config::Config,
    what: &str,
) -> Result<(Option<SecretString>, Option<Arc<TokenCache>>)> {
    use crate::config::AuthMethod;
    let limit = config.smtp.secret_command_timeout;
    match &config.smtp.secret {
        None => Ok((None, None)),
        Some(SecretSource::Command(cmd)) if config.smtp.auth == AuthMethod::Xoauth2 => {
            let cache = TokenCache::new(cmd, &config.dir, config.smtp.token_lifetime, limit);
            cache.prime()?;
            Ok((None, Some(cache)))
        }
        Some(source) => Ok((Some(read_in(source, what, limit, Some(&config.dir))?), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_command_that_runs_too_long_is_killed_with_what_it_started() {
        let started = std::time::Instant::now();
        // The shell waits for `sleep` (a child in its group) and prints nothing in time.
        let e = read_within(
            &SecretSource::Command("sleep 60; echo hemligt".into()),
            "SMTP password",
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        let text = format!("{e:#}");
        assert!(text.contains("\"sleep 60; echo hemligt\""), "{text}");
        assert!(text.contains("did not finish within 0.3 s"), "{text}");
        // A command that leaves a child holding stdout open is not waited for either.
        let started = std::time::Instant::now();
        let s = read_within(
            &SecretSource::Command("printf x; sleep 60 &".into()),
            "SMTP password",
            Duration::from_secs(5),
        )
        .expect("reads");
        assert_eq!(s.expose_secret(), "x");
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn token_output_json_or_bare() {
        let t = parse_token(SecretString::from(
            r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0eXAi"}"#.to_string(),
        ))
        .expect("json");
        assert_eq!(t.secret.expose_secret(), "eyJ0eXAi");
        assert_eq!(t.expires_in, Some(Duration::from_secs(3599)));
        let t = parse_token(SecretString::from(
            r#"{"access_token":"a","expires_in":"120"}"#.to_string(),
        ))
        .expect("string expires_in");
        assert_eq!(t.expires_in, Some(Duration::from_secs(120)));
        let t = parse_token(SecretString::from("ya29.bare".to_string())).expect("bare");
        assert_eq!(t.secret.expose_secret(), "ya29.bare");
        assert_eq!(t.expires_in, None);
        // An error answer of the endpoint: no token, and nothing of it shown.
        let e = parse_token(SecretString::from(
            r#"{"error":"invalid_client","error_description":"hemligt"}"#.to_string(),
        ))
        .unwrap_err();
        assert!(!format!("{e:#}").contains("hemligt"));
    }

    #[test]
    fn token_age_against_its_lifetime() {
        let hour = Duration::from_secs(3599);
        assert!(!token_is_old(Duration::from_secs(0), hour));
        assert!(!token_is_old(Duration::from_secs(3500), hour));
        // A minute before the end at most.
        assert!(token_is_old(Duration::from_secs(3540), hour));
        assert!(token_is_old(Duration::from_secs(7200), hour));
        // Short lives: a tenth of the life.
        let short = Duration::from_secs(3);
        assert!(!token_is_old(Duration::from_millis(2600), short));
        assert!(token_is_old(Duration::from_millis(2750), short));
    }

    #[test]
    fn the_cache_fetches_again_when_old_or_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runs = dir.path().join("runs");
        let cmd = format!(
            "echo run >> '{}'; printf '{{\"access_token\":\"t%s\",\"expires_in\":%s}}' $(wc -l < '{}') 1",
            runs.display(),
            runs.display()
        );
        let cache = TokenCache::new(
            &cmd,
            dir.path(),
            Duration::from_secs(3000),
            Duration::from_secs(5),
        );
        let count = || std::fs::read_to_string(&runs).map_or(0, |s| s.lines().count());
        cache.prime().expect("primes");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let a = cache.lease().await.expect("lease");
            assert!(a.fresh, "the primed token was never used");
            assert_eq!(a.secret.expose_secret(), "t1");
            assert!(!cache.lease().await.expect("lease").fresh);
            assert_eq!(count(), 1);
            // Refused: the next one is new and fresh; a refusal of an older one is ignored.
            cache.refused(a.generation).await;
            let b = cache.lease().await.expect("lease");
            assert!(b.fresh);
            assert_eq!(b.secret.expose_secret(), "t2");
            cache.refused(a.generation).await;
            assert!(!cache.lease().await.expect("lease").fresh);
            // Its one second of life (expires_in) is over.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let c = cache.lease().await.expect("lease");
            assert!(c.fresh);
            assert_eq!(c.secret.expose_secret(), "t3");
        });
        assert_eq!(count(), 3);
    }

    #[test]
    fn debug_of_a_secret_hides_it() {
        let s = SecretString::from("hemligt".to_string());
        assert!(!format!("{s:?}").contains("hemligt"));
    }
}
