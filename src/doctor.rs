//! `postflow doctor`: every check an operator needs before (or while) running the bot, one line
//! each — ✔ when it holds, ✘ with what is wrong and how to fix it, – for a note.

use std::process::ExitCode;
use std::time::Duration;

use crate::actions::CATALOGUE;
use crate::ai::llm::{Llm, LlmError};
use crate::ai::openai::OpenAi;
use crate::settings::Settings;
use crate::store::StoreError;
use crate::store::backup;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Note,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub verdict: Verdict,
    pub check: &'static str,
    /// What was found; for a failure, also how to fix it.
    pub detail: String,
}

impl Finding {
    fn pass(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding { verdict: Verdict::Pass, check, detail: detail.into() }
    }
    fn fail(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding { verdict: Verdict::Fail, check, detail: detail.into() }
    }
    fn note(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding { verdict: Verdict::Note, check, detail: detail.into() }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = match self.verdict {
            Verdict::Pass => "✔",
            Verdict::Fail => "✘",
            Verdict::Note => "–",
        };
        write!(f, "{mark} {}: {}", self.check, self.detail)
    }
}

/// Runs every check, prints one line each, and fails if any check failed.
pub fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut healthy = true;
    for finding in runtime.block_on(checks(settings)) {
        healthy &= finding.verdict != Verdict::Fail;
        println!("{finding}");
    }
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Every check, in the order of the report.
pub async fn checks(settings: &Settings) -> Vec<Finding> {
    let problems = settings.problems();
    let mut found: Vec<Finding> = problems.iter().map(|problem| Finding::fail("settings", problem.clone())).collect();
    found.push(timezone(settings));
    found.push(configuration(settings));
    found.push(store(settings));
    found.extend(telegram(settings, problems.is_empty()).await);
    found.push(if settings.authorized_users.is_empty() {
        Finding::note("admins", "AUTHORIZED_USERS is empty: nobody could use the bot in `run`")
    } else {
        Finding::pass("admins", format!("{} authorised users", settings.authorized_users.len()))
    });
    found.push(ai(settings).await);
    found.push(public_url(settings).await);
    found
}

fn timezone(settings: &Settings) -> Finding {
    match settings.tz() {
        Ok(tz) => {
            let now = chrono::Utc::now().with_timezone(&tz);
            Finding::pass("time zone", format!("{tz}: it is {} there now", now.format("%Y-%m-%d %H:%M (UTC%:z)")))
        }
        Err(problem) => Finding::fail(
            "time zone",
            format!("{problem}: set SCHEDULER_TIMEZONE to an IANA name such as Asia/Yerevan"),
        ),
    }
}

fn configuration(settings: &Settings) -> Finding {
    let dir = settings.config_dir.display();
    let loaded = crate::analytics::load_config(
        &settings.config_dir,
        CATALOGUE,
        settings.tz().unwrap_or(chrono_tz::Asia::Yerevan),
    );
    match &loaded.result {
        Ok(bundle) => Finding::pass("config", format!("{dir}: {}", bundle.summary())),
        Err(diagnostics) => Finding::fail(
            "config",
            format!(
                "{dir}: {} problems, the first at {}: {}; run `postflow validate` and correct them",
                diagnostics.len(),
                diagnostics.first().map_or_else(String::new, |d| format!("{}:{}:{}", d.file, d.line, d.column)),
                diagnostics.first().map_or("", |d| d.message.as_str())
            ),
        ),
    }
}

fn store(settings: &Settings) -> Finding {
    let path = settings.store_path();
    let shown = path.display();
    match backup::inspect(&path) {
        _ if !path.exists() => {
            Finding::note("store", format!("{shown} does not exist yet: `run` and `chat` create it"))
        }
        Ok(summary) if summary.schema < crate::store::SCHEMA_VERSION => Finding::pass(
            "store",
            format!(
                "{shown}: {}; the next start migrates it to schema {} (a copy is kept first)",
                summary.describe(),
                crate::store::SCHEMA_VERSION
            ),
        ),
        Ok(summary) => Finding::pass("store", format!("{shown}: {}", summary.describe())),
        Err(StoreError::Locked(_)) => {
            Finding::pass("store", format!("{shown} is in use by a running postflow (its /readyz reports on it)"))
        }
        Err(error @ StoreError::NewerSchema { .. }) => Finding::fail("store", error.to_string()),
        Err(error) => Finding::fail(
            "store",
            format!("{shown} cannot be read ({error}): restore a backup with `postflow restore FILE --force`"),
        ),
    }
}

async fn telegram(settings: &Settings, settings_ok: bool) -> Vec<Finding> {
    let (Some(token), Some(channel)) = (&settings.bot_token, &settings.channel_id) else {
        return vec![Finding::note("Telegram", "not checked: `run` needs BOT_TOKEN and CHANNEL_ID")];
    };
    if !settings_ok {
        return vec![Finding::note("Telegram", "not checked until the settings above are right")];
    }
    let bot = match crate::telegram::connect(token.expose(), &settings.telegram_api_url) {
        Ok(bot) => bot,
        Err(error) => return vec![Finding::fail("Telegram token", error.to_string())],
    };
    let me = match crate::telegram::startup::check_token(&bot, &settings.telegram_api_url).await {
        Ok(me) => me,
        Err(problem) => {
            return vec![
                Finding::fail("Telegram token", problem),
                Finding::note("Telegram channel", "not checked without a working token"),
            ];
        }
    };
    let username = me.username.clone().unwrap_or_default();
    let token_line = Finding::pass("Telegram token", format!("the bot is @{username}"));
    let channel_line = match crate::telegram::startup::check_channel(&bot, &me, channel).await {
        Ok(_) => Finding::pass(
            "Telegram channel",
            format!("@{username} administers {channel} with the rights to post, edit and delete"),
        ),
        Err(problem) => Finding::fail("Telegram channel", problem),
    };
    vec![token_line, channel_line]
}

/// A failed AI check in the operator's words.
fn ai_verdict(problem: &LlmError) -> String {
    match problem {
        LlmError::Unauthorized(detail) => {
            format!("the server refuses OPENAI_API_KEY (wrong or revoked key): {detail}")
        }
        LlmError::UnknownModel(detail) => format!("OPENAI_MODEL is not available on this server: {detail}"),
        LlmError::Unavailable(detail) => {
            format!("the server cannot be reached (check OPENAI_BASE_URL and the network): {detail}")
        }
        LlmError::Timeout => "the server did not answer in time (OPENAI_TIMEOUT_SECS)".to_string(),
        LlmError::RateLimited { .. } => "the server is rate-limiting this key; try again later".to_string(),
        LlmError::QuotaExceeded(detail) => format!("the account's quota is used up: {detail}"),
        other => other.to_string(),
    }
}

async fn ai(settings: &Settings) -> Finding {
    let Some(key) = &settings.openai_api_key else {
        return Finding::note(
            "AI",
            "offline (no OPENAI_API_KEY) — drafts come from the formats' offline templates; improve and translate need a model",
        );
    };
    match OpenAi::new(crate::cli::openai_settings(settings, key)) {
        Ok(model) => match model.check().await {
            Ok(detail) => Finding::pass("AI", format!("{}: {detail}", model.describe())),
            Err(problem) => Finding::fail("AI", format!("{}: {}", model.describe(), ai_verdict(&problem))),
        },
        Err(problem) => Finding::fail("AI", problem),
    }
}

/// `PUBLIC_BASE_URL/healthz` asked from this machine. A bot running here answers itself;
/// otherwise a stand-in answers on `HTTP_ADDR` for the length of the check, so the route from
/// the public address to this machine is what is checked.
async fn public_url(settings: &Settings) -> Finding {
    let base = settings.public_base_url.as_deref().map(str::trim).filter(|url| !url.is_empty());
    let Some(base) = base else {
        return Finding::note(
            "public URL",
            match settings.click_tracking {
                crate::settings::ClickTracking::DeepLink => {
                    "PUBLIC_BASE_URL is not set: not needed, CTA clicks are counted through deep links into the bot"
                }
                crate::settings::ClickTracking::Off => "PUBLIC_BASE_URL is not set; CLICK_TRACKING is off",
                crate::settings::ClickTracking::Redirect => {
                    "PUBLIC_BASE_URL is not set: CTA buttons link directly and clicks are not counted"
                }
            },
        );
    };
    let Ok(addr) = settings.http_addr.parse::<std::net::SocketAddr>() else {
        return Finding::note("public URL", "not checked until HTTP_ADDR is an address");
    };
    let url = format!("{}/healthz", base.trim_end_matches('/'));
    let stand_in = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            let router = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok\n" }));
            Some(tokio::spawn(crate::http::serve(listener, router)))
        }
        // Taken: the bot (or something else) listens there; its answer tells which.
        Err(_) => None,
    };
    let answered = async {
        let client = crate::http::client(Duration::from_secs(10))?;
        let response = client.get(&url).send().await?;
        let status = response.status();
        Ok::<_, openai_http::Error>((status, response.text().await.unwrap_or_default()))
    }
    .await;
    if let Some(server) = stand_in {
        server.abort();
    }
    match answered {
        Ok((status, body)) if status.is_success() && body == "ok\n" => {
            Finding::pass("public URL", format!("{url} reaches this machine's HTTP_ADDR {addr}"))
        }
        Ok((status, _)) => Finding::fail(
            "public URL",
            format!(
                "{url} answered {status}, not as postflow does: point the reverse proxy for {base} at HTTP_ADDR {addr}"
            ),
        ),
        Err(error) => Finding::fail(
            "public URL",
            format!(
                "{url} cannot be reached from here ({error}): check its DNS, TLS certificate and the proxy or port forwarding to HTTP_ADDR {addr}"
            ),
        ),
    }
}
