//! Layered settings: defaults, then the optional TOML file given by
//! `--config`, then `EVENTFLOWS_*` environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

#[derive(Clone)]
pub struct Settings {
    /// Address the web server listens on.
    pub listen: SocketAddr,
    /// `postgres://…` for PostgreSQL; anything else is a SQLite file.
    pub database_url: String,
    pub data_dir: PathBuf,
    /// The built UI (Trunk's output).
    pub dist_dir: PathBuf,
    /// Base64 of 32 bytes; when unset a key file in the data directory is used.
    pub secret_key: Option<String>,
    /// Adds `Secure` to the session cookie (when served over HTTPS).
    pub secure_cookies: bool,
    /// How long a flow retries one message whose model keeps failing
    /// transiently before the message counts as failed.
    pub retry_limit: std::time::Duration,
    /// Calls in flight at once to one model server (`host:port`), from
    /// every flow and REST run of this instance.
    pub model_connections_per_host: usize,
    /// How long a write to the broker may wait for its acknowledgement
    /// before it is sent again.
    pub write_timeout: std::time::Duration,
    /// How long a message received from SQS stays invisible to other
    /// readers; extended while a flow holds it.
    pub sqs_visibility: std::time::Duration,
    /// The bearer token `/metrics` asks for; without one `/metrics` is off.
    pub metrics_token: Option<String>,
    /// A session unused this long ends.
    pub session_idle: std::time::Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database", &redact_url(&self.database_url))
            .field("data_dir", &self.data_dir)
            .field("dist_dir", &self.dist_dir)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "set"))
            .field("secure_cookies", &self.secure_cookies)
            .field("retry_limit", &self.retry_limit)
            .field(
                "model_connections_per_host",
                &self.model_connections_per_host,
            )
            .field("write_timeout", &self.write_timeout)
            .field("sqs_visibility", &self.sqs_visibility)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "set"))
            .field("session_idle", &self.session_idle)
            .finish()
    }
}

/// The settings file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    dist_dir: Option<PathBuf>,
    secret_key: Option<String>,
    secure_cookies: Option<bool>,
    retry_limit_secs: Option<u64>,
    model_connections_per_host: Option<usize>,
    write_timeout_secs: Option<u64>,
    sqs_visibility_secs: Option<u64>,
    metrics_token: Option<String>,
    session_idle_minutes: Option<u64>,
}

impl Settings {
    /// Reads the settings; `env` looks up an environment variable (a parameter
    /// so that tests need not touch the process environment).
    pub fn load(
        config_file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let file = match config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("could not read the settings file {}", path.display())
                })?;
                toml::from_str::<FileSettings>(&text)
                    .with_context(|| format!("the settings file {} is not valid", path.display()))?
            }
            None => FileSettings::default(),
        };
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());

        let listen_text = env("EVENTFLOWS_LISTEN")
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
        let listen = listen_text.parse().with_context(|| {
            format!("EVENTFLOWS_LISTEN '{listen_text}' is not an address like 127.0.0.1:3000")
        })?;
        let data_dir = env("EVENTFLOWS_DATA_DIR")
            .map(PathBuf::from)
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let dist_dir = env("EVENTFLOWS_DIST_DIR")
            .map(PathBuf::from)
            .or(file.dist_dir)
            .unwrap_or_else(|| PathBuf::from("./dist"));
        let database_url = env("EVENTFLOWS_DATABASE_URL")
            .or(file.database_url)
            .unwrap_or_else(|| {
                data_dir
                    .join("eventflows.db")
                    .to_string_lossy()
                    .into_owned()
            });
        let secret_key = env("EVENTFLOWS_SECRET_KEY").or(file.secret_key);
        let secure_cookies = match env("EVENTFLOWS_SECURE_COOKIES") {
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                other => bail!("EVENTFLOWS_SECURE_COOKIES '{other}' is not true or false"),
            },
            None => file.secure_cookies.unwrap_or(false),
        };
        let retry_limit_secs = match env("EVENTFLOWS_RETRY_LIMIT_SECS") {
            Some(v) => match v.trim().parse::<u64>() {
                Ok(secs) if secs > 0 => secs,
                _ => bail!("EVENTFLOWS_RETRY_LIMIT_SECS '{v}' is not a number of seconds above 0"),
            },
            None => file
                .retry_limit_secs
                .unwrap_or(crate::runner::retry::DEFAULT_RETRY_LIMIT.as_secs()),
        };
        let model_connections_per_host = bounded(
            env("EVENTFLOWS_MODEL_CONNECTIONS_PER_HOST"),
            file.model_connections_per_host.map(|n| n as u64),
            "model_connections_per_host",
            1..=4096,
            "a number",
        )?
        .map_or(crate::runner::DEFAULT_CONNECTIONS_PER_HOST, |n| n as usize);
        let write_timeout_secs = bounded(
            env("EVENTFLOWS_WRITE_TIMEOUT_SECS"),
            file.write_timeout_secs,
            "write_timeout_secs",
            1..=300,
            "a number of seconds",
        )?
        .unwrap_or(crate::runner::SEND_TIMEOUT.as_secs());
        let sqs_visibility_secs = bounded(
            env("EVENTFLOWS_SQS_VISIBILITY_SECS"),
            file.sqs_visibility_secs,
            "sqs_visibility_secs",
            1..=43_200,
            "a number of seconds",
        )?
        .unwrap_or(crate::runner::SQS_VISIBILITY_SECS as u64);
        let metrics_token = env("EVENTFLOWS_METRICS_TOKEN").or(file.metrics_token);
        if let Some(token) = &metrics_token
            && (token.trim().len() < 16 || token.trim() != token)
        {
            bail!(
                "EVENTFLOWS_METRICS_TOKEN must have at least 16 characters and no surrounding spaces"
            );
        }
        let session_idle_minutes = match env("EVENTFLOWS_SESSION_IDLE_MINUTES") {
            Some(v) => match v.trim().parse::<u64>() {
                Ok(minutes) if (1..=20_160).contains(&minutes) => minutes,
                _ => bail!(
                    "EVENTFLOWS_SESSION_IDLE_MINUTES '{v}' is not a number of minutes from 1 to 20160 (14 days)"
                ),
            },
            None => file
                .session_idle_minutes
                .unwrap_or(crate::services::DEFAULT_SESSION_IDLE.as_secs() / 60),
        };
        Ok(Self {
            session_idle: std::time::Duration::from_secs(session_idle_minutes * 60),
            metrics_token,
            retry_limit: std::time::Duration::from_secs(retry_limit_secs),
            model_connections_per_host,
            write_timeout: std::time::Duration::from_secs(write_timeout_secs),
            sqs_visibility: std::time::Duration::from_secs(sqs_visibility_secs),
            listen,
            database_url,
            data_dir,
            dist_dir,
            secret_key,
            secure_cookies,
        })
    }
}

/// A whole-number setting within `range`: from the environment variable
/// (`EVENTFLOWS_` and `key` in capitals) if set, else from the file's
/// `key`; `None` when neither sets it. `what` names the number in errors.
fn bounded(
    from_env: Option<String>,
    from_file: Option<u64>,
    key: &str,
    range: std::ops::RangeInclusive<u64>,
    what: &str,
) -> anyhow::Result<Option<u64>> {
    let (start, end) = (range.start(), range.end());
    if let Some(v) = from_env {
        let name = format!("EVENTFLOWS_{}", key.to_uppercase());
        return match v.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => bail!("{name} '{v}' is not {what} from {start} to {end}"),
        };
    }
    match from_file {
        Some(n) if !range.contains(&n) => bail!("{key} {n} is not {what} from {start} to {end}"),
        other => Ok(other),
    }
}

/// A database URL without its password, for logs and messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_without_file_or_environment() {
        let s = Settings::load(None, |_| None).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert!(s.database_url.ends_with("eventflows.db"));
        assert_eq!(s.dist_dir, PathBuf::from("./dist"));
        assert!(!s.secure_cookies);
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("ef-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("eventflows.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:4000\"\ndata_dir = \"/srv/ef\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file), |name| {
            (name == "EVENTFLOWS_LISTEN").then(|| "0.0.0.0:5000".to_owned())
        })
        .unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:5000");
        assert_eq!(s.data_dir, PathBuf::from("/srv/ef"));
        assert_eq!(s.database_url, "/srv/ef/eventflows.db");
    }

    #[test]
    fn bad_values_are_named_in_the_error() {
        let err = Settings::load(None, |n| {
            (n == "EVENTFLOWS_LISTEN").then(|| "nowhere".into())
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("EVENTFLOWS_LISTEN 'nowhere'"));
        let dir = std::env::temp_dir().join(format!("ef-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(&file, "colour = \"red\"\n").unwrap();
        assert!(Settings::load(Some(&file), |_| None).is_err());
    }

    #[test]
    fn a_metrics_token_is_long_enough_and_never_printed() {
        let with = |token: &'static str| {
            Settings::load(None, move |n| {
                (n == "EVENTFLOWS_METRICS_TOKEN").then(|| token.into())
            })
        };
        assert!(
            Settings::load(None, |_| None)
                .unwrap()
                .metrics_token
                .is_none()
        );
        let short = with("short").err().unwrap().to_string();
        assert!(short.contains("EVENTFLOWS_METRICS_TOKEN"), "{short}");
        assert!(with(" padded-token-0123456789 ").is_err());
        let set = with("scraper-token-0123456789").unwrap();
        assert_eq!(
            set.metrics_token.as_deref(),
            Some("scraper-token-0123456789")
        );
        assert!(!format!("{set:?}").contains("scraper-token"));
    }

    #[test]
    fn the_session_idle_limit_is_minutes_within_bounds() {
        let with = |v: &'static str| {
            Settings::load(None, move |n| {
                (n == "EVENTFLOWS_SESSION_IDLE_MINUTES").then(|| v.into())
            })
        };
        assert_eq!(
            Settings::load(None, |_| None).unwrap().session_idle,
            std::time::Duration::from_secs(8 * 3600)
        );
        assert_eq!(
            with("30").unwrap().session_idle,
            std::time::Duration::from_secs(1800)
        );
        for bad in ["0", "20161", "soon"] {
            let error = with(bad).err().unwrap().to_string();
            assert!(error.contains("EVENTFLOWS_SESSION_IDLE_MINUTES"), "{error}");
        }
    }

    #[test]
    fn calls_per_model_server_are_a_bounded_number() {
        let with = |v: &'static str| {
            Settings::load(None, move |n| {
                (n == "EVENTFLOWS_MODEL_CONNECTIONS_PER_HOST").then(|| v.into())
            })
        };
        assert_eq!(
            Settings::load(None, |_| None)
                .unwrap()
                .model_connections_per_host,
            crate::runner::DEFAULT_CONNECTIONS_PER_HOST
        );
        assert_eq!(with("8").unwrap().model_connections_per_host, 8);
        for bad in ["0", "4097", "many"] {
            let error = with(bad).err().unwrap().to_string();
            assert!(
                error.contains("EVENTFLOWS_MODEL_CONNECTIONS_PER_HOST"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_write_timeout_is_seconds_within_bounds() {
        let with = |v: &'static str| {
            Settings::load(None, move |n| {
                (n == "EVENTFLOWS_WRITE_TIMEOUT_SECS").then(|| v.into())
            })
        };
        assert_eq!(
            Settings::load(None, |_| None).unwrap().write_timeout,
            std::time::Duration::from_secs(30)
        );
        assert_eq!(
            with("5").unwrap().write_timeout,
            std::time::Duration::from_secs(5)
        );
        for bad in ["0", "301", "later"] {
            let error = with(bad).err().unwrap().to_string();
            assert!(error.contains("EVENTFLOWS_WRITE_TIMEOUT_SECS"), "{error}");
        }
    }

    #[test]
    fn passwords_in_database_urls_are_hidden() {
        assert_eq!(
            redact_url("postgres://ef:secret@db:5432/ef"),
            "postgres://ef:***@db:5432/ef"
        );
        assert_eq!(redact_url("data/eventflows.db"), "data/eventflows.db");
    }
}
