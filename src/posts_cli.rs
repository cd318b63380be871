//! `postflow posts …`: the operator's view of the posts in the store — list, show, cancel,
//! publish, delete — and of what the scheduler will do next.

use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::actions::{self, ActionContext};
use crate::cli::{PostsCommand, load_bundle};
use crate::config::Bundle;
use crate::scheduler::clock::{Clock, SystemClock};
use crate::scheduler::publisher::{Outcome, PublishPolicy, Publisher};
use crate::settings::Settings;
use crate::store::{Post, PostStatus, Store};

/// Runs one `posts` subcommand.
pub fn run(settings: &Settings, command: PostsCommand) -> anyhow::Result<ExitCode> {
    let bundle = load_bundle(settings)?;
    let store = Store::open(&settings.store_path())?;
    match command {
        PostsCommand::List { status, limit } => {
            let statuses: Vec<PostStatus> = match status {
                None => PostStatus::ALL.to_vec(),
                Some(names) => names
                    .split(',')
                    .map(|name| {
                        PostStatus::from_name(name.trim()).ok_or_else(|| {
                            let known: Vec<&str> = PostStatus::ALL.iter().map(|s| s.name()).collect();
                            anyhow::anyhow!("unknown status `{}`; known: {}", name.trim(), known.join(", "))
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
            };
            println!("{:>5}  {:<10}  {:<11}  {:<16}  title", "id", "status", "format", "when");
            for status in statuses {
                let mut posts = store.posts_with_status(status, 0, limit)?.posts;
                if status == PostStatus::Scheduled {
                    posts.sort_by_key(|p| (p.publish_at, p.id));
                }
                for post in posts {
                    println!(
                        "{:>5}  {:<10}  {:<11}  {:<16}  {}",
                        post.id,
                        post.status.name(),
                        post.format.as_deref().unwrap_or("-"),
                        when(&bundle, &post),
                        post.display_title()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PostsCommand::Show { id } => {
            let post = store.post(id)?.ok_or_else(|| anyhow::anyhow!("there is no post {id}"))?;
            show(&bundle, &post);
            Ok(ExitCode::SUCCESS)
        }
        PostsCommand::Cancel { id } => {
            let done = action(&bundle, &store, "post.cancel", json!({ "id": id }))?;
            println!("post {id} is {}", done["status"].as_str().unwrap_or("cancelled"));
            Ok(ExitCode::SUCCESS)
        }
        PostsCommand::Delete { id } => {
            action(&bundle, &store, "post.delete", json!({ "id": id }))?;
            println!("post {id} deleted");
            Ok(ExitCode::SUCCESS)
        }
        PostsCommand::Publish { id } => publish(settings, bundle, store, id),
        PostsCommand::Schedule { count } => {
            let now = SystemClock.now();
            println!("Posts due next ({} scheduled):", store.queue_length()?);
            let next = store.due(i64::MAX, 10)?;
            if next.is_empty() {
                println!("  none");
            }
            for (at, id) in next {
                let title = store.post(id)?.map(|p| p.display_title()).unwrap_or_default();
                let late = if at <= now { "  (due now)" } else { "" };
                println!("  {}  #{id}  {title}{late}", actions::posts::local(bundle.timezone, at));
            }
            println!();
            println!("Recurring jobs:");
            if bundle.jobs.is_empty() {
                println!("  none (add a `kind: schedule` file under flows/)");
            }
            let after = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
            for job in &bundle.jobs {
                let zone = job.timezone;
                let times: Vec<String> = crate::scheduler::recurring::upcoming(&job.schedule, zone, after, count)
                    .into_iter()
                    .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
                    .collect();
                let state = if job.enabled { "" } else { " (disabled)" };
                println!("  {}{state} — {} [{}, {zone}]", job.id, job.description, job.cron);
                for time in times {
                    println!("      {time}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// When a post goes or went out, or the admin's wish for a draft.
fn when(bundle: &Bundle, post: &Post) -> String {
    let local = |at| actions::posts::local(bundle.timezone, at);
    match post.status {
        PostStatus::Published | PostStatus::Deleted => post.published_at.map(local),
        PostStatus::Draft => post.desired_time.as_ref().map(|t| t.replace('T', " ")),
        _ => post.publish_at.map(local),
    }
    .unwrap_or_else(|| "-".to_string())
}

fn show(bundle: &Bundle, post: &Post) {
    let local = |at: Option<i64>| at.map_or("-".to_string(), |at| actions::posts::local(bundle.timezone, at));
    println!("post {} — {}", post.id, post.status.name());
    println!("title:      {}", post.display_title());
    println!("format:     {}", post.format.as_deref().unwrap_or("-"));
    println!("language:   {}", post.language.as_deref().unwrap_or("-"));
    println!("publish at: {} ({})", local(post.publish_at), bundle.timezone);
    println!("published:  {}", local(post.published_at));
    println!("created:    {} by {}", local(Some(post.created_at)), post.created_by);
    println!("updated:    {}", local(Some(post.updated_at)));
    println!(
        "layout:     {:?}{}",
        post.options.layout,
        post.options.link_url.as_ref().map(|u| format!(" ({u})")).unwrap_or_default()
    );
    println!(
        "options:    silent {}, pin {}, link preview {}",
        post.options.silent, post.options.pin, post.options.link_preview
    );
    if let Some(media) = &post.media {
        let files: Vec<String> = media.files().map(|(kind, id)| format!("{} {id}", kind.name())).collect();
        println!("media:      {}", files.join(", "));
    }
    for button in &post.buttons {
        println!("button:     {} → {}", button.label, button.url);
    }
    if !post.message_ids.is_empty() {
        println!("messages:   {:?} (attempts {})", post.message_ids, post.attempts);
    }
    if let Some(error) = &post.last_error {
        println!("last error: {error}");
    }
    if let Some(score) = post.score {
        println!("score:      {score}/10");
    }
    println!("revisions:  {}", post.revisions.len());
    println!();
    println!("{}", crate::engine::html::to_plain_text(&post.text, false));
}

/// Runs a post action in its own store transaction, as the operator (user 0).
fn action(bundle: &Bundle, store: &Store, name: &str, args: Value) -> anyhow::Result<Value> {
    let turn = store.begin_turn()?;
    let ctx = ActionContext { bundle, store: &turn, chat_id: 0, user_id: 0, request_id: 0, now: SystemClock.now() };
    match actions::run(&ctx, name, &args) {
        Ok(value) => {
            turn.commit()?;
            Ok(value)
        }
        Err(error) => anyhow::bail!("{} ({})", error.detail, error.code.code()),
    }
}

/// Queues a post for now and, with Telegram settings, publishes it at once through the same
/// publisher `run` uses.
fn publish(settings: &Settings, bundle: Arc<Bundle>, store: Store, id: u64) -> anyhow::Result<ExitCode> {
    action(&bundle, &store, "post.publish", json!({ "id": id }))?;
    let (Some(token), Some(channel)) = (&settings.bot_token, &settings.channel_id) else {
        println!(
            "post {id} is queued; `postflow run` publishes it as soon as it starts (set BOT_TOKEN and CHANNEL_ID to publish from here)"
        );
        return Ok(ExitCode::SUCCESS);
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let bot = crate::telegram::connect(token.expose(), &settings.telegram_api_url)?;
        let started = crate::telegram::startup::check(&bot, &settings.telegram_api_url, channel)
            .await
            .map_err(|problem| anyhow::anyhow!(problem))?;
        let tg = crate::telegram::outbound::Telegram {
            bot,
            pace: Arc::new(crate::telegram::pace::Pace::after_restart(crate::telegram::pace::TELEGRAM)),
            exports: store.exports_dir(),
        };
        // The same links as `run` gives (CLICK_TRACKING, PUBLIC_BASE_URL).
        let clicks = crate::http::clicks::links_for(
            settings.click_tracking,
            settings.public_base_url.as_deref(),
            &started.bot_username,
            || store.click_secret(),
        )?;
        let publisher = Publisher {
            clicks,
            tg,
            store,
            live: crate::config::live::LiveBundle::new(bundle),
            channel_id: started.channel_id.0,
            channel_username: started.channel_username.clone(),
            clock: Arc::new(SystemClock),
            tell: Arc::new(|_, _| {}),
            admins: Vec::new(),
            policy: PublishPolicy::default(),
            run_id: crate::scheduler::publisher::new_run_id(&SystemClock),
        };
        match publisher.publish(id, true).await? {
            Outcome::Published { .. } => {
                let post = publisher.store.post(id)?.ok_or_else(|| anyhow::anyhow!("post {id} vanished"))?;
                println!("post {id} is published: {}", publisher.link(&post));
                Ok(ExitCode::SUCCESS)
            }
            Outcome::Failed { reason } => anyhow::bail!("post {id} could not be published: {reason}"),
            Outcome::Skipped => anyhow::bail!("post {id} was not due (it changed meanwhile)"),
            Outcome::Unsure { reason } => anyhow::bail!(
                "post {id}: Telegram did not answer ({reason}); it may be in the channel — look, then settle it in the bot"
            ),
        }
    })
}
