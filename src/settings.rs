//! Runtime settings from the environment (and `.env`), overridden by command-line flags.

use std::path::PathBuf;

use clap::Args;

/// Settings shared by every command. Each flag also reads its environment variable.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Folder holding flows/, formats/ and prompts/.
    #[arg(long, env = "CONFIG_DIR", default_value = ".", global = true)]
    pub config_dir: PathBuf,

    /// The redb store file.
    #[arg(long, env = "DATABASE_URL", default_value = "data/postflow.redb", global = true)]
    pub database_url: PathBuf,

    /// Time zone for the calendar, the time picker and schedules.
    #[arg(long, env = "SCHEDULER_TIMEZONE", default_value = "Asia/Yerevan", global = true)]
    pub timezone: String,

    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, env = "LOG_LEVEL", default_value = "warn", global = true)]
    pub log_level: String,

    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,

    /// An OpenAI-compatible API key; without it the AI runs offline.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true, global = true)]
    pub openai_api_key: Option<Secret>,

    /// Base URL of an OpenAI-compatible server.
    #[arg(long, env = "OPENAI_BASE_URL", global = true)]
    pub openai_base_url: Option<String>,

    /// The model to ask.
    #[arg(long, env = "OPENAI_MODEL", default_value = "gpt-4o-mini", global = true)]
    pub openai_model: String,

    /// The longest one AI request may take, in seconds (the answer included).
    #[arg(long, env = "OPENAI_TIMEOUT_SECS", default_value_t = 60, global = true)]
    pub openai_timeout_secs: u64,

    /// Attempts per AI request (timeouts, 429, 5xx and network errors are retried).
    #[arg(long, env = "OPENAI_MAX_ATTEMPTS", default_value_t = 3, global = true)]
    pub openai_max_attempts: u32,

    /// The Telegram bot token (used by `run`).
    #[arg(long, env = "BOT_TOKEN", hide_env_values = true, global = true)]
    pub bot_token: Option<Secret>,

    /// The Bot API server (set it for a self-hosted Bot API server).
    #[arg(long, env = "TELEGRAM_API_URL", default_value = "https://api.telegram.org", global = true)]
    pub telegram_api_url: String,

    /// The channel posts go to: `@name` or `-100…`.
    #[arg(long, env = "CHANNEL_ID", global = true)]
    pub channel_id: Option<String>,

    /// Telegram user ids allowed to drive the bot, comma-separated.
    #[arg(long, env = "AUTHORIZED_USERS", default_value = "", hide_default_value = true, global = true)]
    pub authorized_users: UserIds,

    /// Address of the HTTP server (health, metrics, click redirects, webhook).
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080", global = true)]
    pub http_addr: String,

    /// Public base URL of the HTTP server, for links in posts.
    #[arg(long, env = "PUBLIC_BASE_URL", global = true)]
    pub public_base_url: Option<String>,

    /// How CTA buttons of new channel posts count clicks: `redirect` through
    /// PUBLIC_BASE_URL/r/<token> (when it is set; otherwise buttons link directly), `deep-link`
    /// through the bot (t.me/<bot>?start=…, which also knows the Telegram user), or `off`.
    #[arg(long, env = "CLICK_TRACKING", value_enum, default_value_t = ClickTracking::default(), global = true)]
    pub click_tracking: ClickTracking,
}

/// How CTA buttons of new channel posts count clicks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ClickTracking {
    /// Through the bot's signed redirect `PUBLIC_BASE_URL/r/<token>`; no personal data. Without
    /// `PUBLIC_BASE_URL` buttons link directly.
    #[default]
    Redirect,
    /// Through the bot itself: `t.me/<bot>?start=c_<token>` opens the bot, which counts the click
    /// with the reader's Telegram id and answers with the real link.
    DeepLink,
    /// Buttons link directly; nothing is counted.
    Off,
}

/// A secret setting (token, API key): usable by the code, never shown by `Debug` or logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it (an HTTP header, a URL).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Secret(text.to_string()))
    }
}

/// Telegram user ids, written comma-separated (`111, 222`); empty means none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserIds(pub Vec<i64>);

impl std::str::FromStr for UserIds {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let ids = text.split(',').map(str::trim).filter(|part| !part.is_empty()).map(|part| {
            part.parse::<i64>()
                .map_err(|_| format!("`{part}` is not a Telegram user id (ids are numbers, separated by commas)"))
        });
        ids.collect::<Result<Vec<_>, _>>().map(UserIds)
    }
}

impl std::ops::Deref for UserIds {
    type Target = Vec<i64>;
    fn deref(&self) -> &Vec<i64> {
        &self.0
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    /// The configured time zone, or a clear message.
    pub fn tz(&self) -> anyhow::Result<chrono_tz::Tz> {
        self.timezone.parse().map_err(|_| {
            anyhow::anyhow!("SCHEDULER_TIMEZONE `{}` is not a known time zone (try Asia/Yerevan)", self.timezone)
        })
    }

    /// Problems with settings that are set but malformed, in words for the operator.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(err) = self.tz() {
            problems.push(err.to_string());
        }
        if let Some(channel) = &self.channel_id {
            let named = channel.starts_with('@') && channel.len() > 5;
            let numeric = channel.starts_with("-100") && channel[1..].bytes().all(|b| b.is_ascii_digit());
            if !named && !numeric {
                problems.push(format!("CHANNEL_ID `{channel}` is neither `@channelname` nor a `-100…` id"));
            }
        }
        if let Some(token) = &self.bot_token
            && !token
                .expose()
                .split_once(':')
                .is_some_and(|(id, rest)| id.bytes().all(|b| b.is_ascii_digit()) && rest.len() >= 30)
        {
            problems.push("BOT_TOKEN does not look like a token from @BotFather (`123456:ABC…`)".to_string());
        }
        for (name, url) in [
            ("TELEGRAM_API_URL", Some(&self.telegram_api_url)),
            ("OPENAI_BASE_URL", self.openai_base_url.as_ref()),
            ("PUBLIC_BASE_URL", self.public_base_url.as_ref()),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                problems.push(format!("{name} `{url}` is not an http(s) URL"));
            }
        }
        if self.http_addr.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!("HTTP_ADDR `{}` is not an address such as 127.0.0.1:8080", self.http_addr));
        }
        problems
    }

    /// Resolves the store path relative to the working directory.
    pub fn store_path(&self) -> PathBuf {
        self.database_url.strip_prefix("redb://").map(PathBuf::from).unwrap_or_else(|_| self.database_url.clone())
    }
}

/// Sets up tracing on stderr.
pub fn init_logging(settings: &Settings) {
    let mut filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // async-openai logs a model's whole answer at error level when it cannot parse it; answers
    // belong in debug logs only (postflow logs the classified failure itself). It is heard only
    // when the level is plain `debug`/`trace` or the filter names it.
    let named = settings.log_level.contains("async_openai");
    let everything_verbose = ["debug", "trace"].contains(&settings.log_level.trim());
    if !named
        && !everything_verbose
        && let Ok(quiet) = "async_openai=off".parse()
    {
        filter = filter.add_directive(quiet);
    }
    // Colours only for a person at a terminal, never in files or pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match settings.log_format {
        // One JSON object per line, with the span an event happened in (`update`, `step`, `ai`,
        // `request`) and the spans around it.
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_read_with_spaces_and_empty_parts_and_junk_is_named() {
        assert_eq!("".parse::<UserIds>(), Ok(UserIds(vec![])));
        assert_eq!(" 111, 222,".parse::<UserIds>(), Ok(UserIds(vec![111, 222])));
        let problem = "111,abc".parse::<UserIds>().unwrap_err();
        assert!(problem.contains("`abc` is not a Telegram user id"), "{problem}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let secret: Secret = "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef".parse().unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef");
    }
}
