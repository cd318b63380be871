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
    pub openai_api_key: Option<String>,
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

    /// Resolves the store path relative to the working directory.
    pub fn store_path(&self) -> PathBuf {
        self.database_url.strip_prefix("redb://").map(PathBuf::from).unwrap_or_else(|_| self.database_url.clone())
    }
}

/// Sets up tracing on stderr.
pub fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
