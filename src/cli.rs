//! The `postflow` command line: clap subcommands and what each one runs.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::actions::CATALOGUE;
use crate::ai::Ai;
use crate::ai::openai::{OpenAi, OpenAiSettings, RetryPolicy};
use crate::config::{self, Bundle};
use crate::driver::Driver;
use crate::settings::{Settings, init_logging};
use crate::store::Store;

/// postflow — a declarative workflow engine for a Telegram channel with AI-written posts.
#[derive(Debug, Parser)]
#[command(name = "postflow", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check flows/, formats/ and prompts/ and report every problem with file:line:col.
    Validate {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Talk to the bot in the terminal, on the real store (no Telegram token needed).
    Chat {
        /// The Telegram user id to act as (also the chat id); default: the first of
        /// AUTHORIZED_USERS, or 1.
        #[arg(long)]
        user: Option<i64>,
    },
    /// Run conversation scripts (default: tests/conversations/*.yaml under the config dir).
    Test {
        /// Script files or folders.
        files: Vec<PathBuf>,
    },
    /// List, show, cancel, publish or delete posts, and show what the scheduler will do.
    Posts {
        #[command(subcommand)]
        command: PostsCommand,
    },
    /// List the analytics pipelines with their parameters.
    Pipelines,
    /// Run an analytics pipeline and write its rows as CSV (UTF-8 with BOM), JSON or Parquet.
    Export(ExportArgs),
    /// Check the settings, time zone, configuration, store, Telegram token and channel rights, AI
    /// and public URL: one line each, ✔ or ✘ with the fix.
    Doctor,
    /// Ask the running bot whether it is alive (`/healthz` on HTTP_ADDR) or, with --ready,
    /// ready (`/readyz`); exit 0 or 1. For Docker's HEALTHCHECK, systemd and scripts.
    Health {
        #[arg(long)]
        ready: bool,
    },
    /// Copy the store into FILE (a new redb file): one consistent state, also while `run` uses
    /// the store (then the running bot writes the copy; give this command its BOT_TOKEN and
    /// HTTP_ADDR).
    Backup {
        /// The new file (it must not exist).
        file: PathBuf,
    },
    /// Replace the store with a backup from `postflow backup` (stop the bot first).
    Restore {
        file: PathBuf,
        /// Replace an existing store (it is kept beside as `<file>.before-restore-<time>`).
        #[arg(long)]
        force: bool,
    },
    /// Write every table of the store as one JSON document, to move data between versions or
    /// machines (`postflow load` reads it).
    Dump {
        /// The document's format.
        #[arg(long, value_enum, default_value = "json")]
        format: DumpFormat,
        /// Where to write: a file, or `-` for stdout (the default).
        #[arg(long, default_value = "-")]
        out: String,
    },
    /// Create the store from a `postflow dump` document (stop the bot first).
    Load {
        /// The dump file, or `-` for stdin.
        file: String,
        /// Replace an existing store (it is kept beside as `<file>.before-load-<time>`).
        #[arg(long)]
        force: bool,
    },
    /// Run the bot in Telegram (needs BOT_TOKEN, CHANNEL_ID and AUTHORIZED_USERS).
    Run(RunArgs),
}

/// `postflow posts …`
#[derive(Debug, Subcommand)]
pub enum PostsCommand {
    /// List posts, newest first (scheduled: soonest first).
    List {
        /// Only posts with this status: draft, scheduled, publishing, published, failed,
        /// cancelled or deleted (several comma-separated).
        #[arg(long)]
        status: Option<String>,
        /// At most this many per status.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Show one post: its text, media, buttons, options, times and history.
    Show { id: u64 },
    /// Call off a scheduled or failed post.
    Cancel { id: u64 },
    /// Publish a post now: with BOT_TOKEN and CHANNEL_ID set it goes to the channel at once;
    /// otherwise it is queued and `postflow run` publishes it when it starts.
    Publish { id: u64 },
    /// Delete a post that never reached the channel (draft, cancelled or failed).
    Delete { id: u64 },
    /// The scheduler's plan: the next posts due and the next fire times of every recurring job.
    Schedule {
        /// Fire times shown per job.
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
}

/// Options of `postflow export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The pipeline's id (`postflow pipelines` lists them).
    pub pipeline: String,
    /// First day of a custom period (YYYY-MM-DD, local time).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day of a custom period, included (YYYY-MM-DD).
    #[arg(long)]
    pub to: Option<String>,
    /// A parameter as name=value, e.g. `--param period=week --param format=promo`.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// File format; default from the --out extension, else csv.
    #[arg(long)]
    pub format: Option<String>,
    /// Where to write: a file, or `-` for stdout (the default).
    #[arg(long, default_value = "-")]
    pub out: String,
}

/// Options of `postflow run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Receive updates through a webhook at this public https URL (served on HTTP_ADDR, checked
    /// with a secret token) instead of long polling.
    #[arg(long, env = "WEBHOOK_URL")]
    pub webhook_url: Option<url::Url>,
    /// Flood control: a user sending more than this many updates within --flood-window-secs
    /// gets one warning and is ignored for --flood-mute-secs.
    #[arg(long, env = "FLOOD_MAX_UPDATES", default_value_t = 30)]
    pub flood_max_updates: usize,
    #[arg(long, env = "FLOOD_WINDOW_SECS", default_value_t = 10)]
    pub flood_window_secs: u64,
    #[arg(long, env = "FLOOD_MUTE_SECS", default_value_t = 60)]
    pub flood_mute_secs: u64,
    /// A scheduled post whose time passed while the bot was down is still published (with a
    /// note to the admins) if it is at most this many minutes late; an older one is held and
    /// the admins are asked.
    #[arg(long, env = "PUBLISH_GRACE_MINUTES", default_value_t = 360)]
    pub publish_grace_minutes: u64,
    /// Tries per post before it is marked failed and the admins are told (transient Telegram
    /// failures only; each try already retries quick network errors).
    #[arg(long, env = "PUBLISH_ATTEMPTS", default_value_t = 3)]
    pub publish_attempts: u32,
}

/// Formats of `postflow dump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DumpFormat {
    Json,
}

/// Machine or human output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|arg| arg == crate::analytics::helper::HELPER_ARG) {
        return crate::analytics::helper::serve();
    }
    let tuning = crate::memory::tune();
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    init_logging(&cli.settings);
    tracing::debug!(?tuning, "malloc settings for reports");
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `run` and `chat` live long: they check pipelines (at start and on each reload) in a child
/// process, so polars' planning code is not read into them before a report runs. The child is
/// this very executable (`/proc/self/exe` also after an upgrade replaced the file).
fn check_pipelines_in_child_process() {
    let this = std::path::Path::new("/proc/self/exe");
    let executable = if this.exists() { Ok(this.to_path_buf()) } else { std::env::current_exe() };
    match executable {
        Ok(executable) => crate::analytics::helper::check_in_child_process(executable),
        Err(err) => tracing::debug!(%err, "pipelines are checked in-process: this executable is not known"),
    }
}

/// Loads and compiles the configuration, or prints every problem and fails.
pub fn load_bundle(settings: &Settings) -> anyhow::Result<Arc<Bundle>> {
    let loaded = crate::analytics::load_config(&settings.config_dir, CATALOGUE, settings.tz()?);
    let bundle = match loaded.result {
        Ok(bundle) => bundle,
        Err(ref diagnostics) => {
            eprint!("{}", config::render_diagnostics(diagnostics, &loaded.sources));
            anyhow::bail!("the configuration in {} has problems; nothing was started", settings.config_dir.display())
        }
    };
    drop(loaded.sources);
    // Compiling freed a few MiB that malloc would keep (see memory.rs): give them back.
    crate::memory::release_now();
    Ok(Arc::new(bundle))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = cli.settings;
    match cli.command {
        Command::Validate { format } => {
            let loaded = crate::analytics::load_config(&settings.config_dir, CATALOGUE, settings.tz()?);
            match (&loaded.result, format) {
                (Ok(bundle), OutputFormat::Text) => {
                    println!("{}: ok", bundle.summary());
                    Ok(ExitCode::SUCCESS)
                }
                (Ok(bundle), OutputFormat::Json) => {
                    let report = serde_json::json!({
                        "ok": true,
                        "flows": bundle.flows.len(),
                        "jobs": bundle.jobs.len(),
                        "pipelines": bundle.pipelines.len(),
                        "formats": bundle.formats.len(),
                        "templates": bundle.prompt_files,
                        "problems": [],
                    });
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    Ok(ExitCode::SUCCESS)
                }
                (Err(diagnostics), OutputFormat::Text) => {
                    eprint!("{}", config::render_diagnostics(diagnostics, &loaded.sources));
                    Ok(ExitCode::FAILURE)
                }
                (Err(diagnostics), OutputFormat::Json) => {
                    let report = serde_json::json!({ "ok": false, "problems": diagnostics });
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Chat { user } => {
            let user = user.or(settings.authorized_users.first().copied()).unwrap_or(1);
            check_pipelines_in_child_process();
            let bundle = load_bundle(&settings)?;
            let store = Store::open(&settings.store_path())?;
            crate::memory::spawn_releaser();
            // This release always drafts offline; say so where the admin looks.
            let ai = build_ai(&settings)?;
            println!("AI: {}", ai.llm().describe());
            // Edits to the configuration serve from the next message on.
            let reloader = crate::reload::Reloader::new(settings.config_dir.clone(), settings.tz()?, bundle);
            let _watch = reloader
                .watch(crate::config::watch::DEBOUNCE, |outcome| match outcome {
                    crate::reload::Reloaded::Applied { summary, .. } => {
                        eprintln!("\n[configuration reloaded: {summary}]")
                    }
                    crate::reload::Reloaded::Unchanged => {}
                    crate::reload::Reloaded::Rejected { report, .. } => {
                        eprintln!("\n[the changed configuration was refused; the previous one keeps serving]\n{report}")
                    }
                })
                .map_err(|error| eprintln!("configuration changes will not be picked up: {error}"))
                .ok();
            let driver = Driver::with_live(reloader.live(), store, ai);
            let stdin = std::io::stdin();
            let ansi = std::io::stdout().is_terminal();
            crate::console::run(&driver, user, stdin.lock(), std::io::stdout(), ansi)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { files } => {
            let bundle = load_bundle(&settings)?;
            let scripts = crate::conversation::find_scripts(&files, &settings.config_dir);
            if scripts.is_empty() {
                anyhow::bail!(
                    "no conversation scripts found (looked in {}/tests/conversations)",
                    settings.config_dir.display()
                );
            }
            let failures =
                crate::conversation::run_all(bundle, &scripts, &settings.config_dir, &mut std::io::stdout())?;
            Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Posts { command } => crate::posts_cli::run(&settings, command),
        Command::Pipelines => crate::export_cli::list(&settings),
        Command::Export(args) => crate::export_cli::export(&settings, args),
        Command::Doctor => crate::doctor::run(&settings),
        Command::Health { ready } => health(&settings, ready),
        Command::Backup { file } => crate::backup_cli::backup(&settings, &file),
        Command::Restore { file, force } => crate::backup_cli::restore(&settings, &file, force),
        Command::Dump { format: DumpFormat::Json, out } => crate::backup_cli::dump(&settings, &out),
        Command::Load { file, force } => crate::backup_cli::load(&settings, &file, force),
        Command::Run(args) => run_bot(&settings, args),
    }
}

fn run_bot(settings: &Settings, args: RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(problem) = settings.problems().into_iter().next() {
        anyhow::bail!("{problem}");
    }
    let Some(token) = &settings.bot_token else {
        anyhow::bail!(
            "BOT_TOKEN is not set: `run` needs the token from @BotFather (`postflow chat` works without one)"
        );
    };
    let Some(channel) = &settings.channel_id else {
        anyhow::bail!("CHANNEL_ID is not set: give the channel as @name or its -100… id");
    };
    if settings.authorized_users.is_empty() {
        anyhow::bail!("AUTHORIZED_USERS is empty: list the Telegram user ids of the admins, comma-separated");
    }
    check_pipelines_in_child_process();
    let bundle = load_bundle(settings)?;
    crate::memory::spawn_releaser();
    let store = Store::open(&settings.store_path())?;
    let mut options = crate::telegram::RunOptions::new(
        token.expose().to_string(),
        &settings.telegram_api_url,
        channel.clone(),
        settings.authorized_users.0.clone(),
    );
    options.flood = crate::telegram::gate::FloodLimits {
        max_updates: args.flood_max_updates.max(1),
        window: std::time::Duration::from_secs(args.flood_window_secs.max(1)),
        mute: std::time::Duration::from_secs(args.flood_mute_secs),
    };
    options.webhook_url = args.webhook_url;
    options.publish = crate::scheduler::publisher::PublishPolicy {
        attempts: args.publish_attempts.max(1),
        grace: std::time::Duration::from_secs(args.publish_grace_minutes * 60),
        ..crate::scheduler::publisher::PublishPolicy::default()
    };
    options.http_addr = Some(settings.http_addr.parse()?);
    options.public_base_url = settings.public_base_url.clone().filter(|url| !url.trim().is_empty());
    options.click_tracking = settings.click_tracking;
    let ai = build_ai(settings)?;
    tracing::info!(ai = %ai.llm().describe(), "AI");
    let reloader = crate::reload::Reloader::new(settings.config_dir.clone(), settings.tz()?, bundle);
    options.reload = Some(reloader.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(crate::telegram::run(reloader.live(), store, ai, options))?;
    Ok(ExitCode::SUCCESS)
}

/// The language model the settings ask for: an OpenAI-compatible server when a key is set,
/// the offline generator otherwise.
pub fn build_ai(settings: &Settings) -> anyhow::Result<Arc<Ai>> {
    let Some(key) = &settings.openai_api_key else {
        tracing::info!("no OPENAI_API_KEY: the AI runs offline (drafts from the formats' offline templates)");
        return Ok(Arc::new(Ai::offline()));
    };
    let model = OpenAi::new(openai_settings(settings, key)).map_err(|problem| anyhow::anyhow!(problem))?;
    Ok(Arc::new(Ai::new(Arc::new(model))))
}

pub(crate) fn openai_settings(settings: &Settings, key: &crate::settings::Secret) -> OpenAiSettings {
    OpenAiSettings {
        api_key: key.expose().to_string(),
        base_url: settings.openai_base_url.clone().filter(|url| !url.trim().is_empty()),
        model: settings.openai_model.clone(),
        timeout: std::time::Duration::from_secs(settings.openai_timeout_secs.max(1)),
        retry: RetryPolicy { attempts: settings.openai_max_attempts.max(1), ..RetryPolicy::default() },
    }
}

/// `postflow health [--ready]`: the bot's own answer, printed, and the exit code for it.
fn health(settings: &Settings, ready: bool) -> anyhow::Result<ExitCode> {
    let url = crate::http::local_url(&settings.http_addr, if ready { "/readyz" } else { "/healthz" })
        .map_err(|problem| anyhow::anyhow!(problem))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answer = runtime.block_on(async {
        let response = crate::http::client(std::time::Duration::from_secs(5))?.get(&url).send().await?;
        let status = response.status();
        Ok::<_, openai_http::Error>((status, response.text().await.unwrap_or_default()))
    });
    match answer {
        Ok((status, body)) => {
            println!("{}", body.trim_end());
            Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Err(error) => {
            eprintln!("no answer from {url}: {error} (is `postflow run` running with this HTTP_ADDR?)");
            Ok(ExitCode::FAILURE)
        }
    }
}
