//! The Telegram adapter behind `postflow run`: updates from teloxide (long polling or a webhook)
//! become engine events, effects become Bot API calls; access control, flood control, albums,
//! "typing…" and graceful shutdown live here.

pub mod gate;
pub mod inbound;
pub mod outbound;
pub mod pace;
pub mod startup;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use teloxide::dispatching::{Dispatcher, UpdateHandler};
use teloxide::prelude::*;
use teloxide::types::AllowedUpdate;
use teloxide::update_listeners::{Polling, webhooks};
use tracing::Instrument;

use crate::ai::{Ai, Completed};
use crate::config::live::LiveBundle;
use crate::driver::{Delivery, Driver, Handled, Launch};
use crate::engine::event::{Effect, Event, EventKind, Media, MediaFile};
use crate::engine::session::Notice;
use crate::engine::{self};
use crate::reload::{Reloaded, Reloader};
use crate::scheduler::publisher::{PublishPolicy, Publisher};
use crate::settings::ClickTracking;
use crate::store::{Store, User};
use gate::{FloodLimits, Gate, Verdict};
use inbound::{FromChat, Inbound, Incoming, Sender};
use outbound::{Press, Telegram};

/// A source of "now" (the system clock, or a test's clock).
pub type Clock = Arc<dyn crate::scheduler::clock::Clock>;

/// Called after an update has been dealt with and every reply delivered (tests and benchmarks
/// wait on it; metrics will count with it).
pub type Observer = Arc<dyn Fn(&Report) + Send + Sync>;

/// What became of one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub chat_id: i64,
    pub update_id: u64,
    /// The update finished a conversation (its flow ended).
    pub ended: bool,
}

/// How `run` takes updates and when it stops.
pub struct RunOptions {
    pub bot_token: String,
    /// The Bot API server, without a trailing slash.
    pub api_url: String,
    pub channel: String,
    pub authorized: Vec<i64>,
    pub flood: FloodLimits,
    /// An outsider is refused once, then not answered again for this long.
    pub refusal_quiet: Duration,
    /// Files of an album arrive as separate updates; they are collected until none has come
    /// for this long.
    pub album_quiet: Duration,
    /// Receive updates through a webhook at this public URL (served on `http_addr`) instead of
    /// long polling.
    pub webhook_url: Option<url::Url>,
    /// Where the HTTP server listens (health, metrics, click links, webhook); `None`: no server
    /// (then neither a webhook nor tracked links can be served).
    pub http_addr: Option<SocketAddr>,
    /// The public address of `http_addr` (`PUBLIC_BASE_URL`): with it, CTA buttons in channel
    /// posts go through tracked links served there and clicks are counted.
    pub public_base_url: Option<String>,
    /// How new posts' CTA buttons count clicks (`CLICK_TRACKING`).
    pub click_tracking: ClickTracking,
    pub clock: Clock,
    pub observer: Option<Observer>,
    /// Telegram's message rates as the pacer keeps them (tests shorten the channel's minute).
    pub limits: pace::Limits,
    /// How the publisher retries and how late a missed post may still go out.
    pub publish: PublishPolicy,
    /// Resolves when the bot should stop (SIGINT/SIGTERM in the binary).
    pub shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Hot reload: the configuration folder is watched (and `/reload` works). Its live bundle
    /// must be the one `run` serves.
    pub reload: Option<Arc<Reloader>>,
}

impl RunOptions {
    /// Options with the system clock, no observer and shutdown on SIGINT or SIGTERM.
    pub fn new(bot_token: String, api_url: &str, channel: String, authorized: Vec<i64>) -> Self {
        RunOptions {
            bot_token,
            api_url: api_url.trim_end_matches('/').to_string(),
            channel,
            authorized,
            flood: FloodLimits { max_updates: 30, window: Duration::from_secs(10), mute: Duration::from_secs(60) },
            refusal_quiet: Duration::from_secs(600),
            album_quiet: Duration::from_millis(700),
            webhook_url: None,
            http_addr: None,
            public_base_url: None,
            click_tracking: ClickTracking::default(),
            clock: Arc::new(crate::scheduler::clock::SystemClock),
            observer: None,
            limits: pace::TELEGRAM,
            publish: PublishPolicy::default(),
            shutdown: Box::pin(termination_signal()),
            reload: None,
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The bot client for `api_url` (a trailing slash is fine; a path is not: teloxide hides the
/// token in error messages only when it is the URL's first path segment).
pub fn connect(token: &str, api_url: &str) -> Result<Bot, RunError> {
    // No trailing slash: teloxide appends path segments, and `…//bot…` would miss.
    let url = url::Url::parse(api_url.trim_end_matches('/'))
        .map_err(|e| RunError::Startup(format!("TELEGRAM_API_URL {api_url} is not a URL: {e}")))?;
    if !matches!(url.path(), "" | "/") {
        return Err(RunError::Startup(format!(
            "TELEGRAM_API_URL {api_url} has a path; give the server's root URL (the token would otherwise show in error messages)"
        )));
    }
    Ok(Bot::new(token).set_api_url(url))
}

/// The updates the bot asks Telegram for: messages and button presses from admins, and the
/// channel posts' reaction counts (sent only to a channel admin that asks for them).
fn allowed_updates() -> Vec<AllowedUpdate> {
    vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery, AllowedUpdate::MessageReactionCount]
}

/// Why `run` stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A start-up check failed; one line for the operator.
    #[error("{0}")]
    Startup(String),
}

/// Runs the bot until `options.shutdown` resolves: start-up checks, then updates until told to
/// stop; the update in hand is finished and albums being collected are handled before it returns.
pub async fn run(live: Arc<LiveBundle>, store: Store, ai: Arc<Ai>, options: RunOptions) -> Result<(), RunError> {
    let bot = connect(&options.bot_token, &options.api_url)?;
    let started = startup::check(&bot, &options.api_url, &options.channel).await.map_err(RunError::Startup)?;
    startup::set_commands(&bot, &live.get()).await.map_err(RunError::Startup)?;
    tracing::info!(bot = %started.bot_username, channel = started.channel_id.0, "connected to Telegram");
    // Reports link to channel posts.
    let channel_link =
        crate::scheduler::publisher::channel_link(started.channel_username.as_deref(), started.channel_id.0);
    if let Err(error) = store.set_channel_link(&channel_link) {
        tracing::warn!("could not note the channel's link: {error}");
    }
    let cannot_read = |e: crate::store::StoreError| RunError::Startup(format!("cannot read the store: {e}"));
    let click_links = crate::http::clicks::links_for(
        options.click_tracking,
        options.public_base_url.as_deref(),
        &started.bot_username,
        || store.click_secret(),
    )
    .map_err(cannot_read)?;
    // New posts' buttons need the HTTP server only for the web redirect.
    let links_need_http = click_links.is_some() && options.click_tracking == ClickTracking::Redirect;
    if options.click_tracking == ClickTracking::DeepLink {
        tracing::info!(bot = %started.bot_username, "CTA clicks are counted through deep links into the bot");
    }
    // Posts published while clicks were tracked keep their tracked buttons: their links are
    // still served (and counted) after tracking is switched off or changed, though new posts
    // link directly (or the new way).
    let served_links = match (&click_links, store.has_click_secret().map_err(cannot_read)?) {
        (Some(links), _) => Some(links.clone()),
        (None, true) => {
            tracing::info!("new posts link directly; old posts' tracked links are still served");
            Some(Arc::new(crate::http::ClickLinks::new("", store.click_secret().map_err(cannot_read)?)))
        }
        (None, false) => None,
    };
    let click_state = served_links.as_ref().map(|links| crate::http::ClickState {
        links: links.clone(),
        store: store.clone(),
        clock: options.clock.clone(),
    });
    let vitals = crate::vitals::Vitals::new(options.clock.clone());
    vitals.telegram_ok();
    // Metrics are kept where they can be read: with the HTTP server.
    let metrics = options.http_addr.and_then(|_| crate::telemetry::install());
    let _metrics_upkeep = metrics.clone().map(|handle| {
        AbortOnDrop(
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(5));
                loop {
                    every.tick().await;
                    handle.run_upkeep();
                }
            })
            .abort_handle(),
        )
    });
    let admin =
        crate::http::admin::AdminState { store: store.clone(), key: crate::http::admin::admin_key(&options.bot_token) };
    let health = crate::http::HealthState { vitals: vitals.clone(), store: store.clone(), live: live.clone(), metrics };
    // Telegram is asked now and then, so that readiness knows it is reachable while idle.
    let probe_bot = bot.clone();
    let probe_vitals = vitals.clone();
    let _telegram_probe = AbortOnDrop(
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(crate::vitals::TELEGRAM_PROBE_SECS));
            every.tick().await;
            loop {
                every.tick().await;
                match probe_bot.get_me().await {
                    Ok(_) => probe_vitals.telegram_ok(),
                    Err(error) => tracing::warn!("Telegram does not answer: {error}"),
                }
            }
        })
        .abort_handle(),
    );
    let app = Arc::new(App {
        click_links: click_links.clone(),
        click_state: click_state.clone(),
        asides: Mutex::new(tokio::task::JoinSet::new()),
        reader_answers: Arc::new(tokio::sync::Semaphore::new(MAX_READER_ANSWERS)),
        channel_id: started.channel_id.0,
        tg: Telegram {
            bot: bot.clone(),
            pace: Arc::new(pace::Pace::after_restart(options.limits)),
            exports: store.exports_dir(),
        },
        driver: Arc::new(Driver::with_live(live.clone(), store, ai)),
        gate: Gate::new(options.authorized.iter().copied(), options.flood, options.refusal_quiet),
        bot_username: started.bot_username.clone(),
        clock: options.clock.clone(),
        observer: options.observer.clone(),
        album_quiet: options.album_quiet,
        queues: Mutex::new(HashMap::new()),
        workers: Mutex::new(Vec::new()),
        albums: Mutex::new(HashMap::new()),
        unsupported_albums: Mutex::new(VecDeque::new()),
        running: Mutex::new(HashMap::new()),
        closing: std::sync::atomic::AtomicBool::new(false),
        generations: std::sync::atomic::AtomicU64::new(0),
        scheduler: Mutex::new(None),
        reloader: options.reload.clone(),
        last_refusal: Mutex::new(None),
        vitals: vitals.clone(),
    });
    app.resume_actions(&options.authorized);
    app.start_scheduler(&started, &options.authorized, options.publish);
    // Hot reload: changed files are compiled again; the outcome is handled here, in order.
    let _config_watch = match &options.reload {
        Some(reloader) => {
            let (outcomes, mut received) = tokio::sync::mpsc::unbounded_channel();
            let watch = reloader.watch(crate::config::watch::DEBOUNCE, move |outcome| {
                let _ = outcomes.send(outcome);
            });
            let reload_app = app.clone();
            let admins = options.authorized.clone();
            tokio::spawn(async move {
                while let Some(outcome) = received.recv().await {
                    reload_app.after_reload(&outcome, &admins).await;
                }
            });
            match watch {
                Ok(watch) => Some(watch),
                Err(error) => {
                    tracing::warn!(
                        "configuration changes will not be picked up by themselves: {error}; /reload still works"
                    );
                    None
                }
            }
        }
        None => None,
    };
    let handler_app = app.clone();
    let handler: UpdateHandler<std::convert::Infallible> = dptree::entry().endpoint(move |update: Update| {
        let app = handler_app.clone();
        async move {
            app.on_update(update).await;
            Ok(())
        }
    });
    // Arrival is one quick sequential step (gate, albums, queueing); the work itself runs in one
    // queue per chat (see `App::enqueue`), so a busy chat never holds up the others.
    let mut dispatcher = Dispatcher::builder(bot.clone(), handler)
        .default_handler(|_| async {})
        .distribution_function(|_| Some(()))
        .build();
    let token = dispatcher.shutdown_token();
    let shutdown = options.shutdown;
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("stopping: no new updates; finishing the ones in hand");
        // Dispatching may not have started yet; keep asking until it stops.
        loop {
            match token.shutdown() {
                Ok(done) => {
                    done.await;
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    let errors =
        teloxide::error_handlers::LoggingErrorHandler::with_custom_text("reading updates from Telegram failed");
    match options.webhook_url {
        Some(url) => {
            let Some(http_addr) = options.http_addr else {
                return Err(RunError::Startup("a webhook needs HTTP_ADDR to listen on".to_string()));
            };
            // One connection: Telegram then delivers updates one after another, in order.
            // Our own secret, so the webhook can be set again with the updates we need.
            let secret: String = (0..32).map(|_| char::from(b'a' + rand::random_range(0..26u8))).collect();
            let webhook =
                webhooks::Options::new(http_addr, url.clone()).max_connections(1).secret_token(secret.clone());
            let (listener, stop, router) = webhooks::axum_to_router(bot.clone(), webhook)
                .await
                .map_err(|e| RunError::Startup(format!("Telegram refused the webhook: {e}")))?;
            // teloxide sets the webhook without `allowed_updates`; reaction counts must be asked for.
            bot.set_webhook(url)
                .secret_token(secret)
                .max_connections(1)
                .allowed_updates(allowed_updates())
                .await
                .map_err(|e| RunError::Startup(format!("Telegram refused the webhook: {e}")))?;
            let tcp = tokio::net::TcpListener::bind(http_addr)
                .await
                .map_err(|e| RunError::Startup(format!("cannot listen on HTTP_ADDR {http_addr}: {e}")))?;
            let router = router.merge(crate::http::router(click_state.clone(), Some(health), Some(admin)));
            let server = tokio::spawn(async move {
                let service = router.into_make_service_with_connect_info::<SocketAddr>();
                if let Err(error) = axum::serve(tcp, service).with_graceful_shutdown(stop).await {
                    tracing::error!("the webhook server failed: {error}");
                }
            });
            let dispatched = dispatcher.try_dispatch_with_listener(listener, errors).await;
            if dispatched.is_err() {
                server.abort();
            }
            let _ = server.await;
            dispatched.map_err(|e| RunError::Startup(format!("cannot start taking updates: {e}")))?;
        }
        None => {
            // Health, metrics and click links need a server of their own when updates come by
            // polling.
            let server = match options.http_addr {
                None => None,
                Some(http_addr) => match tokio::net::TcpListener::bind(http_addr).await {
                    Ok(tcp) => {
                        let router = crate::http::router(click_state, Some(health), Some(admin));
                        Some(AbortOnDrop(tokio::spawn(crate::http::serve(tcp, router)).abort_handle()))
                    }
                    // New posts' tracked links must be served; health alone is not worth
                    // refusing to publish for.
                    Err(error) if !links_need_http => {
                        tracing::error!(
                            addr = %http_addr,
                            "cannot listen on HTTP_ADDR: /healthz, /readyz, /metrics, backups through the bot and old posts' click links are not served: {error}"
                        );
                        None
                    }
                    Err(error) => {
                        return Err(RunError::Startup(format!(
                            "cannot listen on HTTP_ADDR {http_addr} for click links: {error}"
                        )));
                    }
                },
            };
            let polling = Polling::builder(bot.clone())
                .timeout(Duration::from_secs(10))
                .allowed_updates(allowed_updates())
                .delete_webhook()
                .await
                .build();
            dispatcher
                .try_dispatch_with_listener(polling, errors)
                .await
                .map_err(|e| RunError::Startup(format!("cannot start taking updates: {e}")))?;
            drop(server);
        }
    }
    app.finish().await;
    tracing::info!("stopped");
    Ok(())
}

/// Runs `work` on the blocking pool inside the current span (the step's log lines stay under
/// the update they belong to).
fn blocking_in_span<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> tokio::task::JoinHandle<T> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
}

/// The running adapter.
struct App {
    tg: Telegram,
    driver: Arc<Driver>,
    gate: Gate,
    bot_username: String,
    clock: Clock,
    observer: Option<Observer>,
    album_quiet: Duration,
    /// One queue per chat, served by one task: a chat's work is done in arrival order.
    queues: Mutex<HashMap<i64, tokio::sync::mpsc::Sender<Job>>>,
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Albums being collected, by (chat, media group).
    albums: Mutex<HashMap<(i64, String), Album>>,
    /// Albums of unusable files already answered, so an album gets one notice, not ten.
    unsupported_albums: Mutex<VecDeque<(i64, String)>>,
    /// The slow (AI) action each chat waits for, running in its own task: the chat's queue
    /// stays free, so the admin can cancel or get a "busy" answer meanwhile.
    running: Mutex<HashMap<i64, Running>>,
    /// Set when the bot stops: no new AI request starts, and no new chat worker.
    closing: std::sync::atomic::AtomicBool,
    /// Numbers the model tasks.
    generations: std::sync::atomic::AtomicU64,
    /// The problems the admins were last told a changed configuration was refused for.
    last_refusal: Mutex<Option<String>>,
    /// Signs of life for `/readyz`.
    vitals: Arc<crate::vitals::Vitals>,
    /// The scheduler's task and the switch that stops it.
    scheduler: Mutex<Option<(tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>)>>,
    /// Hot reload, for `/reload`.
    reloader: Option<Arc<Reloader>>,
    /// The links new posts' CTA buttons get, when clicks are tracked.
    click_links: Option<Arc<crate::http::ClickLinks>>,
    /// Follows tracked links (deep links into the bot come here), when any were ever made.
    click_state: Option<crate::http::ClickState>,
    /// Work done outside the chats' queues (answers to outsiders and to readers of deep links),
    /// kept so that a clean stop waits for it.
    asides: Mutex<tokio::task::JoinSet<()>>,
    /// Deep-link answers under way; beyond [`MAX_READER_ANSWERS`] a link is not answered.
    reader_answers: Arc<tokio::sync::Semaphore>,
    /// The channel's numeric id (reaction counts from elsewhere are ignored).
    channel_id: i64,
}

struct Running {
    /// Unique per started task: a result is matched to the task that produced it.
    generation: u64,
    request_id: u64,
    name: String,
    args: serde_json::Value,
    task: tokio::task::AbortHandle,
    /// Updates reported once the action's result has been delivered.
    update_ids: Vec<u64>,
}

struct Album {
    /// Every update of the album, in arrival order.
    update_ids: Vec<u64>,
    sender: Sender,
    files: Vec<MediaFile>,
    caption: Option<String>,
    last_part: Instant,
    /// Later updates of the chat, queued once the album is.
    waiting: Vec<Job>,
}

/// Work queued for a chat.
struct Job {
    /// The updates this job finishes (reported to the observer when done).
    update_ids: Vec<u64>,
    /// A press to answer (by the engine's answer, or silently).
    press: Option<Press>,
    /// A menu text to send first (flood warning, unusable message).
    notice: Option<&'static str>,
    /// The event for the engine, with the update id that guards against handling it twice.
    event: Option<(Sender, u64, EventKind)>,
    /// A slow action's result, for the engine, with the generation of the task that made it.
    finished: Option<(Launch, Completed, u64)>,
    /// Something the bot tells the admin on its own (the publisher's notices).
    tell: Option<Notice>,
    /// `/reload` from this admin: reload the configuration and say how it went (in the chat's
    /// order, so a redelivered `/reload` is recognised like any update).
    reload: bool,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What `follow` did about a chat's slow action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Followed {
    Nothing,
    Launched,
}

/// The most files Telegram puts in one album.
const MAX_ALBUM: usize = 10;
/// Jobs a chat may have waiting; more are dropped (flood control mutes such a sender).
const QUEUE_LENGTH: usize = 64;
/// Deep-link answers sent at once at most; a crowd of readers beyond it is not answered (and
/// cannot hold up the admins' answers or the channel).
const MAX_READER_ANSWERS: usize = 32;
/// A chat's worker stops after this long without work.
const WORKER_IDLE: Duration = Duration::from_secs(60);

/// Locks a mutex, going on with the data if a panicking holder poisoned it (no lock here guards
/// an invariant a panic could break half-way).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl App {
    /// Takes one update as it arrives: quick and in arrival order (the gate counts arrivals,
    /// not handling), then queues the work for its chat.
    async fn on_update(self: &Arc<Self>, update: Update) {
        let update_id = u64::from(update.id.0);
        self.vitals.telegram_ok();
        crate::telemetry::update_received(match &update.kind {
            teloxide::types::UpdateKind::Message(_) => "message",
            teloxide::types::UpdateKind::CallbackQuery(_) => "press",
            teloxide::types::UpdateKind::MessageReactionCount(_) => "reaction_count",
            _ => "other",
        });
        if let teloxide::types::UpdateKind::MessageReactionCount(counts) = &update.kind {
            self.on_reaction_counts(counts);
            return;
        }
        let chat_id = update.chat().map_or(0, |chat| chat.id.0);
        let FromChat { chat_id, sender, incoming } = match inbound::read(&update, &self.bot_username) {
            Inbound::Chat(from_chat) => from_chat,
            Inbound::Ignore { reason, press } => {
                tracing::debug!(update_id, "ignored {reason}");
                self.answer_aside(press.map(Press::new), None, chat_id, update_id);
                return;
            }
        };
        // A reader who tapped a CTA button that is a deep link into the bot (`/start c_<token>`),
        // admin or not: counted, and answered with the button's real address.
        if let (Incoming::Event(EventKind::Command { name, args }), Some(state)) = (&incoming, &self.click_state)
            && name == "start"
            && chat_id == sender.id
            && let Some(token) = crate::http::clicks::deep_link_token(args)
        {
            if self.gate.reader_within_limits(sender.id, Instant::now()) {
                self.on_deep_link(state.clone(), chat_id, update_id, token.to_string());
            } else {
                tracing::debug!(user_id = sender.id, "flood control: a deep link ignored");
                self.report(chat_id, &[update_id], false);
            }
            return;
        }
        // The second and later files of an album join the first without another check.
        if let Incoming::AlbumPart { group, file, caption } = &incoming
            && self.join_album(chat_id, update_id, group, file, caption)
        {
            return;
        }
        let press = match &incoming {
            Incoming::Press { query_id, .. } => Some(Press::new(query_id.clone())),
            _ => None,
        };
        let (verdict, log) = self.gate.check(sender.id, Instant::now());
        if let Some(log) = log {
            match verdict {
                Verdict::WarnFlood => {
                    tracing::warn!(user_id = sender.id, username = ?sender.username, "flood control: ignoring a user for a while")
                }
                _ => tracing::warn!(
                    user_id = sender.id,
                    username = ?sender.username,
                    name = %sender.name,
                    attempts = log.attempts_since_last,
                    "refused an update from a user who is not authorised"
                ),
            }
        }
        let job = |notice, event| Job {
            update_ids: vec![update_id],
            press: None,
            notice,
            event,
            finished: None,
            tell: None,
            reload: false,
        };
        if let (Verdict::Admit, Incoming::Event(EventKind::Command { name, .. }), Some(_)) =
            (&verdict, &incoming, &self.reloader)
            && name == "reload"
        {
            self.enqueue_after_albums(chat_id, Job { reload: true, ..job(None, None) });
            return;
        }
        let job = match verdict {
            Verdict::Admit => match incoming {
                Incoming::Event(kind) => job(None, Some((sender, update_id, kind))),
                Incoming::Press { data, message_id, .. } => {
                    let kind = EventKind::Button { data, message_id: Some(message_id) };
                    Job { press, ..job(None, Some((sender, update_id, kind))) }
                }
                Incoming::AlbumPart { group, file, caption } => {
                    let album = Album {
                        update_ids: vec![update_id],
                        sender,
                        files: vec![file],
                        caption,
                        last_part: Instant::now(),
                        waiting: Vec::new(),
                    };
                    self.start_album(chat_id, group, album);
                    return;
                }
                Incoming::Unsupported { album } => {
                    if let Some(group) = album
                        && !self.first_unsupported_of(chat_id, group)
                    {
                        job(None, None)
                    } else {
                        job(Some("unsupported_message"), Some((sender, update_id, EventKind::Resume)))
                    }
                }
            },
            // An admin's warning goes through their queue, after what they sent before.
            Verdict::WarnFlood => Job { press, ..job(Some("flood_warning"), None) },
            Verdict::Refuse => {
                // Once per refusal window (the gate refuses an outsider once, then ignores them).
                self.record_denial(sender.id);
                self.answer_aside(press, Some("access_denied"), chat_id, update_id);
                return;
            }
            Verdict::Ignore => {
                self.answer_aside(press, None, chat_id, update_id);
                return;
            }
        };
        self.enqueue_after_albums(chat_id, job);
    }

    /// Answers a press and sends a notice outside any queue (outsiders, muted users, presses
    /// nobody handles), then reports the update.
    fn answer_aside(
        self: &Arc<Self>,
        press: Option<Press>,
        notice: Option<&'static str>,
        chat_id: i64,
        update_id: u64,
    ) {
        if press.is_none() && notice.is_none() {
            self.report(chat_id, &[update_id], false);
            return;
        }
        let app = self.clone();
        self.spawn_aside(async move {
            if let Some(mut press) = press {
                outbound::answer(&app.tg, &mut press, None).await;
            }
            if let Some(key) = notice {
                app.notify(chat_id, key).await;
            }
            app.report(chat_id, &[update_id], false);
        });
    }

    /// Runs work outside the chats' queues; a clean stop waits for it.
    fn spawn_aside(&self, work: impl Future<Output = ()> + Send + 'static) {
        let mut asides = lock(&self.asides);
        // Finished work is let go of as new work comes.
        while asides.try_join_next().is_some() {}
        asides.spawn(work);
    }

    /// Whether this is the first unusable file seen of an album.
    fn first_unsupported_of(&self, chat_id: i64, group: String) -> bool {
        let mut seen = lock(&self.unsupported_albums);
        let key = (chat_id, group);
        if seen.contains(&key) {
            return false;
        }
        if seen.len() >= 256 {
            seen.pop_front();
        }
        seen.push_back(key);
        true
    }

    /// Queues a job, or, while an album of the chat is still being collected, parks it on that
    /// album: the album came first, and its late files must still join it.
    fn enqueue_after_albums(self: &Arc<Self>, chat_id: i64, job: Job) {
        // Held while queueing, so an album's collector cannot slip in between.
        let mut albums = lock(&self.albums);
        let newest = albums
            .iter_mut()
            .filter(|((chat, _), _)| *chat == chat_id)
            .max_by_key(|(_, album)| album.update_ids.first().copied());
        match newest {
            Some((_, album)) => album.waiting.push(job),
            None => self.enqueue(chat_id, job),
        }
        drop(albums);
    }

    /// Puts a job on the chat's queue, starting the chat's worker if it has none.
    fn enqueue(self: &Arc<Self>, chat_id: i64, job: Job) {
        let mut queues = lock(&self.queues);
        let mut job = job;
        for _ in 0..2 {
            if self.closing.load(std::sync::atomic::Ordering::SeqCst) && !queues.contains_key(&chat_id) {
                // Stopping: no new worker (nothing would wait for it). Only a model's result can
                // come here now; its session still waits, and the next start asks again.
                self.report(chat_id, &job.update_ids, false);
                return;
            }
            let queue = queues.entry(chat_id).or_insert_with(|| self.start_worker(chat_id));
            match queue.try_send(job) {
                Ok(()) => return,
                Err(tokio::sync::mpsc::error::TrySendError::Full(result)) if result.finished.is_some() => {
                    // A model's result is never dropped: it waits for room (or, should the
                    // worker be gone, goes to a new one).
                    let (queue, app) = (queue.clone(), self.clone());
                    tokio::spawn(async move {
                        if let Err(returned) = queue.send(result).await {
                            app.enqueue(chat_id, returned.0);
                        }
                    });
                    return;
                }
                Err(tokio::sync::mpsc::error::TrySendError::Full(dropped)) => {
                    tracing::warn!(chat_id, "a chat's queue is full; dropping an update");
                    let (first, rest) = dropped.update_ids.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
                    self.report(chat_id, rest, false);
                    self.answer_aside(dropped.press, None, chat_id, first);
                    return;
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(returned)) => {
                    queues.remove(&chat_id);
                    job = returned;
                }
            }
        }
    }

    /// Starts the task that works through a chat's queue; it stops after a quiet minute.
    fn start_worker(self: &Arc<Self>, chat_id: i64) -> tokio::sync::mpsc::Sender<Job> {
        let (queue, mut jobs) = tokio::sync::mpsc::channel::<Job>(QUEUE_LENGTH);
        let app = self.clone();
        let worker = tokio::spawn(async move {
            loop {
                match tokio::time::timeout(WORKER_IDLE, jobs.recv()).await {
                    Ok(Some(job)) => {
                        let update_id = job.update_ids.first().copied();
                        let span = tracing::info_span!("update", chat_id, update_id);
                        let started = Instant::now();
                        app.work(chat_id, job).instrument(span.clone()).await;
                        span.in_scope(|| tracing::info!(ms = started.elapsed().as_millis() as u64, "update handled"));
                    }
                    Ok(None) => break,
                    Err(_) => {
                        let mut queues = lock(&app.queues);
                        if jobs.is_empty() {
                            queues.remove(&chat_id);
                            break;
                        }
                    }
                }
            }
        });
        let mut workers = lock(&self.workers);
        workers.retain(|worker| !worker.is_finished());
        workers.push(worker);
        queue
    }

    /// Does one job of a chat.
    async fn work(self: &Arc<Self>, chat_id: i64, job: Job) {
        let mut press = job.press;
        // A press that waited long in the queue is answered now, before Telegram gives up on it.
        if let Some(press) = press.as_mut()
            && press.arrived.elapsed() > Duration::from_secs(10)
        {
            outbound::answer(&self.tg, press, None).await;
        }
        if let Some(key) = job.notice {
            self.notify(chat_id, key).await;
        }
        let mut ended = false;
        let mut followed = Followed::Nothing;
        if let Some((sender, update_id, kind)) = job.event {
            let handled = self.handle(chat_id, update_id, sender, kind, press.as_mut()).await;
            ended = handled.as_ref().is_some_and(|h| h.effects.iter().any(|e| matches!(e, Effect::End)));
            followed = self.follow(chat_id, handled.map(|h| h.waiting_on), &job.update_ids);
        }
        if job.reload
            && let Some(&update_id) = job.update_ids.first()
        {
            self.reload_in_chat(chat_id, update_id).await;
        }
        if let Some(notice) = job.tell {
            let handled = self.tell(chat_id, notice).await;
            ended = handled.as_ref().is_some_and(|h| h.effects.iter().any(|e| matches!(e, Effect::End)));
            followed = self.follow(chat_id, handled.map(|h| h.waiting_on), &job.update_ids);
        }
        if let Some((launch, completed, generation)) = job.finished {
            {
                let mut running = lock(&self.running);
                if running.get(&chat_id).is_some_and(|r| r.generation == generation) {
                    running.remove(&chat_id);
                }
            }
            let handled = self.finish_action(chat_id, &launch, completed).await;
            ended = handled.as_ref().is_some_and(|h| h.effects.iter().any(|e| matches!(e, Effect::End)));
            followed = self.follow(chat_id, handled.map(|h| h.waiting_on), &job.update_ids);
        }
        if let Some(press) = press.as_mut() {
            outbound::answer(&self.tg, press, None).await;
        }
        // A job that started a slow action is reported when the action's reply is out.
        if followed != Followed::Launched {
            self.report(chat_id, &job.update_ids, ended);
        }
    }

    /// Keeps the chat's slow action in step with its session: starts the one the session waits
    /// for (unless it runs already) and stops one it no longer waits for (the admin cancelled).
    /// `update_ids` are reported when a newly started action's reply is delivered.
    fn follow(self: &Arc<Self>, chat_id: i64, waiting_on: Option<Option<Launch>>, update_ids: &[u64]) -> Followed {
        // The store failed: leave whatever runs alone.
        let Some(waiting_on) = waiting_on else { return Followed::Nothing };
        let mut running = lock(&self.running);
        // The same request (running, or done with its result queued): nothing to do.
        if let (Some(current), Some(launch)) = (running.get(&chat_id), &waiting_on)
            && current.request_id == launch.request_id
            && current.name == launch.name
            && current.args == launch.args
        {
            return Followed::Nothing;
        }
        if let Some(stale) = running.remove(&chat_id) {
            tracing::info!(chat_id, request_id = stale.request_id, "the chat moved on; stopping its AI request");
            stale.task.abort();
            self.report(chat_id, &stale.update_ids, false);
        }
        let Some(launch) = waiting_on else { return Followed::Nothing };
        if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
            // Stopping: the session keeps waiting, and the next start runs the request.
            return Followed::Nothing;
        }
        let app = self.clone();
        let (request_id, name, args) = (launch.request_id, launch.name.clone(), launch.args.clone());
        let generation = self.generations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let task = tokio::spawn(
            async move {
                let completed = app.ask_model(chat_id, &launch).await;
                // Keep the entry until the result is handled, so that an update handled meanwhile
                // does not start the same request again; take the updates to report.
                let update_ids = {
                    let mut running = lock(&app.running);
                    match running.get_mut(&chat_id) {
                        Some(current) if current.generation == generation => std::mem::take(&mut current.update_ids),
                        // Replaced meanwhile: the result is stale.
                        _ => return,
                    }
                };
                let finished = Some((launch, completed, generation));
                let job =
                    Job { update_ids, press: None, notice: None, event: None, finished, tell: None, reload: false };
                app.enqueue_after_albums(chat_id, job);
            }
            .instrument(tracing::info_span!("ai", chat_id, request_id, action = %name)),
        );
        let task = task.abort_handle();
        running.insert(chat_id, Running { generation, request_id, name, args, task, update_ids: update_ids.to_vec() });
        Followed::Launched
    }

    /// Runs the model for a slow action while "typing…" shows (at once, then renewed as it
    /// fades after about 5 s). A panic in the AI layer becomes a failed result, so the chat is
    /// never left waiting.
    async fn ask_model(self: &Arc<Self>, chat_id: i64, launch: &Launch) -> Completed {
        outbound::typing(&self.tg, chat_id).await;
        let app = self.clone();
        let (name, args) = (launch.name.clone(), launch.args.clone());
        let mut model = tokio::spawn(
            async move {
                let bundle = app.driver.bundle();
                app.driver.ai.run(&bundle, &name, &args).await
            }
            .in_current_span(),
        );
        // Aborting this task (the admin cancelled) must stop the model call and the typing too.
        let _stop_model = AbortOnDrop(model.abort_handle());
        let joined = loop {
            tokio::select! {
                joined = &mut model => break joined,
                () = tokio::time::sleep(Duration::from_millis(4500)) => outbound::typing(&self.tg, chat_id).await,
            }
        };
        joined.unwrap_or_else(|error| {
            tracing::error!(chat_id, action = %launch.name, "the AI action panicked: {error}");
            Completed {
                result: Err(crate::actions::ActionError::new(
                    crate::config::bundle::ActionErrorCode::GenerationFailed,
                    "the AI action panicked",
                )),
                calls: Vec::new(),
            }
        })
    }

    /// At start: actions that were under way when the bot stopped are started again.
    fn resume_actions(self: &Arc<Self>, authorized: &[i64]) {
        let sessions = match self.driver.store.sessions() {
            Ok(sessions) => sessions,
            Err(error) => {
                tracing::error!("cannot read the sessions to resume their actions: {error}");
                return;
            }
        };
        for session in sessions {
            if let (crate::engine::session::Wait::Action { request_id }, Some(pending)) =
                (&session.wait, &session.pending)
                && pending.request_id == *request_id
                && self.driver.deferred(&pending.name)
                && engine::pending_is_current(&self.driver.bundle(), &session)
                && authorized.contains(&session.user_id)
            {
                tracing::info!(chat_id = session.chat_id, action = %pending.name, "resuming an AI request cut off by the last stop");
                let launch = Launch {
                    chat_id: session.chat_id,
                    user_id: session.user_id,
                    request_id: *request_id,
                    name: pending.name.clone(),
                    args: pending.args.clone(),
                };
                // The pacer counts the restart as each chat's last message, so the reply keeps
                // Telegram's one message a second even if the chat got one just before the stop.
                self.follow(session.chat_id, Some(Some(launch)), &[]);
            }
        }
    }

    /// Runs a notice in an admin's chat and delivers what it says.
    async fn tell(&self, chat_id: i64, notice: Notice) -> Option<Handled> {
        let event = Event { chat_id, user_id: chat_id, now: self.clock.now(), kind: EventKind::Notice { notice } };
        let driver = self.driver.clone();
        let outcome = blocking_in_span(move || driver.handle_update(event, &Delivery::default(), &mut |_| {})).await;
        self.deliver_outcome(chat_id, 0, outcome, None, pace::Priority::FollowUp).await
    }

    /// Hands a slow action's result to the engine and delivers what it says.
    async fn finish_action(&self, chat_id: i64, launch: &Launch, completed: Completed) -> Option<Handled> {
        let now = self.clock.now();
        let driver = self.driver.clone();
        let launch_owned = launch.clone();
        let outcome = blocking_in_span(move || driver.finish_action(&launch_owned, completed, now, &mut |_| {})).await;
        self.deliver_outcome(chat_id, 0, outcome, None, pace::Priority::FollowUp).await
    }

    /// Follows a deep link from a CTA button: the click is counted (once per reader and button
    /// within the window) and the reader gets the button's real address under the menu's
    /// `click_link`; a link that is not ours gets `click_link_unknown`. A repeat within the
    /// window gets no second answer (the first is just above). Outside any queue: the reader is
    /// usually no admin.
    fn on_deep_link(self: &Arc<Self>, state: crate::http::ClickState, chat_id: i64, update_id: u64, token: String) {
        let Ok(permit) = self.reader_answers.clone().try_acquire_owned() else {
            tracing::debug!(chat_id, "too many deep links at once: one not answered");
            self.report(chat_id, &[update_id], false);
            return;
        };
        let app = self.clone();
        self.spawn_aside(async move {
            let _permit = permit;
            let reader = crate::http::clicks::Reader::Telegram { user: chat_id };
            let message = match crate::http::clicks::follow(&state, &token, reader).await {
                Some(followed) if followed.repeated => None,
                Some(followed) => {
                    let values = minijinja::context! { label => &followed.label, url => &followed.target };
                    engine::standalone_text_with(&app.driver.bundle(), "click_link", &values).map(|text| {
                        let button =
                            crate::engine::post_view::LinkButton { label: followed.label, url: followed.target };
                        crate::engine::event::OutMessage {
                            text,
                            keyboard: crate::engine::event::Keyboard::Links(vec![vec![button]]),
                            preview: crate::engine::event::LinkPreview::Off,
                            ..Default::default()
                        }
                    })
                }
                None if state.links.unknown_link_answer_due(chat_id, state.clock.now_ms()) => {
                    engine::standalone_text(&app.driver.bundle(), "click_link_unknown")
                        .map(|text| crate::engine::event::OutMessage { text, ..Default::default() })
                }
                None => None,
            };
            if let Some(message) = message
                && let Err(error) = outbound::send(&app.tg, chat_id, pace::Priority::FollowUp, &message).await
            {
                tracing::warn!(chat_id, "could not send a deep link's address: {error}");
            }
            app.report(chat_id, &[update_id], false);
        });
    }

    /// Logs that an outsider was refused (`access_denied`, with their Telegram id), off the
    /// runtime's thread.
    fn record_denial(&self, user_id: i64) {
        let (store, now) = (self.driver.store.clone(), self.clock.now());
        tokio::task::spawn_blocking(move || {
            let logged = store.begin_turn().and_then(|turn| {
                turn.record_event("access_denied", now, &serde_json::json!({ "user": user_id }))?;
                turn.commit()
            });
            if let Err(error) = logged {
                tracing::warn!("an access denial was not logged: {error}");
            }
        });
    }

    /// Keeps the latest reaction counts of a channel post's message (other chats' counts are
    /// not ours). The write runs off the runtime's thread.
    fn on_reaction_counts(&self, update: &teloxide::types::MessageReactionCountUpdated) {
        if update.chat.id.0 != self.channel_id {
            tracing::debug!(chat_id = update.chat.id.0, "reaction counts from another chat ignored");
            return;
        }
        let counts: Vec<(String, u32)> = update
            .reactions
            .iter()
            .map(|count| {
                let name = match &count.r#type {
                    teloxide::types::ReactionType::Emoji { emoji } => emoji.clone(),
                    teloxide::types::ReactionType::CustomEmoji { custom_emoji_id } => {
                        format!("custom:{}", custom_emoji_id.0)
                    }
                    teloxide::types::ReactionType::Paid => "paid".to_string(),
                };
                (name, u32::try_from(count.total_count).unwrap_or(u32::MAX))
            })
            .collect();
        let (store, message, at) = (self.driver.store.clone(), i64::from(update.message_id.0), update.date.timestamp());
        tokio::task::spawn_blocking(move || {
            // A message that is no post of ours (or not recorded yet) is left alone.
            let recorded = match store.post_of_message(message) {
                Ok(Some(post)) => store.set_reactions(post, message, &counts, at),
                Ok(None) => Ok(()),
                Err(error) => Err(error),
            };
            if let Err(error) = recorded {
                tracing::warn!(message, "reaction counts not recorded: {error}");
            }
        });
    }

    /// Starts the scheduler: it publishes due posts to the channel and tells admins through
    /// their chats' queues.
    fn start_scheduler(self: &Arc<Self>, started: &startup::Startup, authorized: &[i64], policy: PublishPolicy) {
        let app = Arc::downgrade(self);
        let tell: crate::scheduler::publisher::Teller = Arc::new(move |chat_id, notice| {
            if let Some(app) = app.upgrade() {
                let job = Job {
                    update_ids: Vec::new(),
                    press: None,
                    notice: None,
                    event: None,
                    finished: None,
                    tell: Some(notice),
                    reload: false,
                };
                app.enqueue_after_albums(chat_id, job);
            }
        });
        let publisher = Arc::new(Publisher {
            tg: self.tg.clone(),
            store: self.driver.store.clone(),
            live: self.driver.live.clone(),
            channel_id: started.channel_id.0,
            channel_username: started.channel_username.clone(),
            clock: self.clock.clone(),
            tell,
            admins: authorized.to_vec(),
            policy,
            run_id: crate::scheduler::publisher::new_run_id(&*self.clock),
            clicks: self.click_links.clone(),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(crate::scheduler::due::run(publisher, stopped, self.vitals.scheduler_started()));
        *lock(&self.scheduler) = Some((stop, task));
    }

    /// At shutdown: albums being collected are queued, every queue is worked to the end.
    async fn finish(self: &Arc<Self>) {
        // The scheduler finishes the post it is sending and stops; its notices are queued.
        let scheduler = lock(&self.scheduler).take();
        if let Some((stop, task)) = scheduler {
            let _ = stop.send(true);
            let _ = task.await;
            // Nothing is being sent any more: posts left `publishing` are for the admins.
            if let Err(error) = self.driver.store.set_live_run(0) {
                tracing::warn!("could not record the scheduler's stop: {error}");
            }
        }
        let mut open: Vec<((i64, String), Album)> = lock(&self.albums).drain().collect();
        open.sort_by_key(|(_, album)| album.update_ids.first().copied());
        for ((chat_id, _), album) in open {
            for job in album_jobs(album) {
                self.enqueue(chat_id, job);
            }
        }
        // AI requests under way are dropped: the sessions still wait for them, and the next
        // start runs them again. Their updates are reported as dealt with.
        self.closing.store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop_models();
        // Closing the queues lets each worker finish what it has and stop.
        lock(&self.queues).clear();
        let workers: Vec<_> = lock(&self.workers).drain(..).collect();
        for worker in workers {
            let _ = worker.await;
        }
        let mut asides = std::mem::take(&mut *lock(&self.asides));
        while asides.join_next().await.is_some() {}
        // A result queued before the stop may have been handled by now; anything else stops.
        self.stop_models();
    }

    fn stop_models(&self) {
        let stopped: Vec<(i64, Running)> = lock(&self.running).drain().collect();
        for (chat_id, running) in stopped {
            running.task.abort();
            self.report(chat_id, &running.update_ids, false);
        }
    }

    /// Tells the observer that updates are dealt with.
    fn report(&self, chat_id: i64, update_ids: &[u64], ended: bool) {
        if let Some(observer) = &self.observer {
            update_ids.iter().for_each(|&update_id| observer(&Report { chat_id, update_id, ended }));
        }
    }

    /// After a reload: a new bundle gets its commands set and the scheduler looks at its jobs
    /// again; a refused one is told to the admins (`to`), with its first problems.
    async fn after_reload(&self, outcome: &Reloaded, to: &[i64]) {
        match outcome {
            Reloaded::Applied { .. } => {
                *lock(&self.last_refusal) = None;
                self.driver.store.wake_scheduler();
                if let Err(error) = startup::set_commands(&self.tg.bot, &self.driver.bundle()).await {
                    tracing::warn!("could not set the commands of the new configuration: {error}");
                }
            }
            // The files are back to the configuration in service: a later refusal is news.
            Reloaded::Unchanged => *lock(&self.last_refusal) = None,
            // Only what the admins were told counts (a `/reload` answers its asker alone).
            Reloaded::Rejected { .. } if to.is_empty() => {}
            Reloaded::Rejected { problems, report } => {
                // Saving files that stay broken the same way is not news to the admins.
                let repeated = {
                    let mut last = lock(&self.last_refusal);
                    let repeated = last.as_deref() == Some(report.as_str());
                    *last = Some(report.clone());
                    repeated
                };
                if repeated {
                    tracing::info!("the configuration is refused for the same problems; the admins were told already");
                    return;
                }
                let values = reload_failure_values(*problems, report);
                for &admin in to {
                    self.notify_with(admin, "reload_failed", &values).await;
                }
            }
        }
    }

    /// `/reload` from an admin, in the chat's turn: reloads now and says how it went. A
    /// redelivered `/reload` is not carried out twice.
    async fn reload_in_chat(&self, chat_id: i64, update_id: u64) {
        let Some(reloader) = self.reloader.clone() else { return };
        let (store, now) = (self.driver.store.clone(), self.clock.now());
        let first = tokio::task::spawn_blocking(move || {
            let turn = store.begin_turn()?;
            let first = turn.first_sight_of_update(chat_id, update_id, now)?;
            turn.commit()?;
            Ok::<_, crate::store::StoreError>(first)
        })
        .await;
        match first {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                tracing::debug!(update_id, "a redelivered /reload was already carried out");
                return;
            }
            Ok(Err(error)) => {
                tracing::error!("cannot record the /reload: {error}");
                return;
            }
            Err(error) => {
                tracing::error!("the /reload stopped: {error}");
                return;
            }
        }
        let outcome = match tokio::task::spawn_blocking(move || reloader.reload()).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::error!("the reload stopped: {error}");
                return;
            }
        };
        self.after_reload(&outcome, &[]).await;
        match &outcome {
            Reloaded::Applied { .. } => self.notify(chat_id, "reload_done").await,
            Reloaded::Unchanged => self.notify(chat_id, "reload_unchanged").await,
            Reloaded::Rejected { problems, report } => {
                self.notify_with(chat_id, "reload_failed", &reload_failure_values(*problems, report)).await
            }
        }
    }

    /// Sends a menu text outside any conversation.
    async fn notify(&self, chat_id: i64, key: &str) {
        self.notify_with(chat_id, key, &minijinja::Value::from(())).await
    }

    /// Sends a menu text with values for its template outside any conversation.
    async fn notify_with(&self, chat_id: i64, key: &str, values: &minijinja::Value) {
        let Some(text) = engine::standalone_text_with(&self.driver.bundle(), key, values) else {
            tracing::warn!("menu text `{key}` is missing or does not render");
            return;
        };
        let message =
            crate::engine::event::OutMessage { text, media: None, keyboard: Default::default(), ..Default::default() };
        if let Err(error) = outbound::send(&self.tg, chat_id, pace::Priority::FollowUp, &message).await {
            tracing::warn!(chat_id, "could not send `{key}`: {error}");
        }
    }

    /// Hands one event to the engine and delivers what it says. The press is answered as soon
    /// as the engine produces the answer, and "typing…" shows while an action runs. Returns
    /// what was handled (`None` if nothing was: a redelivery, or a failure already reported).
    async fn handle(
        &self,
        chat_id: i64,
        update_id: u64,
        sender: Sender,
        kind: EventKind,
        press: Option<&mut Press>,
    ) -> Option<Handled> {
        let now = self.clock.now();
        let event = Event { chat_id, user_id: sender.id, now, kind };
        let user = User {
            id: sender.id,
            username: sender.username.clone(),
            name: Some(sender.name.clone()).filter(|n| !n.is_empty()),
            last_active: now,
        };
        let delivery = Delivery { update_id: Some(update_id), user: Some(user) };
        let (progress_tx, mut progress) = tokio::sync::mpsc::unbounded_channel::<Effect>();
        let driver = self.driver.clone();
        let mut job = blocking_in_span(move || {
            driver.handle_update(event, &delivery, &mut |effect| {
                let _ = progress_tx.send(effect.clone());
            })
        });
        let mut press = press;
        let mut typing: Option<tokio::task::JoinHandle<()>> = None;
        let outcome = loop {
            tokio::select! {
                Some(effect) = progress.recv() => match effect {
                    Effect::Answer { text } => {
                        if let Some(press) = press.as_deref_mut() {
                            outbound::answer(&self.tg, press, text.as_deref()).await;
                        }
                    }
                    Effect::RunAction { .. } if typing.is_none() => {
                        // Shown at once (one try), then renewed while the action runs (it
                        // fades after ~5 s) in its own task.
                        outbound::typing(&self.tg, chat_id).await;
                        let tg = self.tg.clone();
                        typing = Some(tokio::spawn(async move {
                            loop {
                                tokio::time::sleep(Duration::from_millis(4500)).await;
                                outbound::typing(&tg, chat_id).await;
                            }
                        }));
                    }
                    _ => {}
                },
                outcome = &mut job => break outcome,
            }
        };
        if let Some(typing) = typing {
            typing.abort();
        }
        if let Ok(Ok(None)) = outcome {
            tracing::info!(chat_id, update_id, "an update seen before was delivered again; skipped");
        }
        self.deliver_outcome(chat_id, update_id, outcome, press, pace::Priority::Reply).await
    }

    /// Delivers what the engine said, or tells the admin that the store failed or the handling
    /// panicked.
    async fn deliver_outcome(
        &self,
        chat_id: i64,
        update_id: u64,
        outcome: Result<Result<Option<Handled>, crate::store::StoreError>, tokio::task::JoinError>,
        press: Option<&mut Press>,
        first: pace::Priority,
    ) -> Option<Handled> {
        match outcome {
            Ok(Ok(Some(mut handled))) => {
                let effects = std::mem::take(&mut handled.effects);
                let ended = effects.iter().any(|effect| matches!(effect, Effect::End));
                let _ = outbound::deliver_as(&self.tg, chat_id, effects, press, first).await;
                if ended {
                    handled.effects.push(Effect::End);
                }
                Some(handled)
            }
            Ok(Ok(None)) => None,
            Ok(Err(error)) => {
                tracing::error!(chat_id, update_id, "the store failed: {error}");
                self.notify(chat_id, "error_store_failed").await;
                None
            }
            Err(error) => {
                tracing::error!(chat_id, update_id, "handling an update panicked: {error}");
                self.notify(chat_id, "internal_error").await;
                None
            }
        }
    }

    /// Adds a file to an album being collected; `false` if no album of that group is open.
    fn join_album(
        &self,
        chat_id: i64,
        update_id: u64,
        group: &str,
        file: &MediaFile,
        caption: &Option<String>,
    ) -> bool {
        let mut albums = lock(&self.albums);
        let Some(album) = albums.get_mut(&(chat_id, group.to_string())) else {
            return false;
        };
        album.update_ids.push(update_id);
        if album.files.len() < MAX_ALBUM {
            album.files.push(file.clone());
        }
        if album.caption.is_none() {
            album.caption.clone_from(caption);
        }
        album.last_part = Instant::now();
        true
    }

    /// Opens an album with its first file; once no more files come for a moment, it is queued
    /// as one media event (unless a later update of the chat queued it first).
    fn start_album(self: &Arc<Self>, chat_id: i64, group: String, album: Album) {
        let key = (chat_id, group);
        lock(&self.albums).insert(key.clone(), album);
        let app = self.clone();
        tokio::spawn(async move {
            loop {
                let wait = {
                    let mut albums = lock(&app.albums);
                    let Some(album) = albums.get(&key) else { return };
                    let quiet_for = album.last_part.elapsed();
                    let first = album.update_ids.first().copied();
                    // An earlier album of the chat still open goes first.
                    let earlier_open = albums
                        .iter()
                        .any(|((chat, _), other)| *chat == chat_id && other.update_ids.first().copied() < first);
                    if quiet_for >= app.album_quiet && !earlier_open {
                        if let Some(album) = albums.remove(&key) {
                            // Queued while the albums are locked: nothing of this chat can
                            // be queued in between.
                            for job in album_jobs(album) {
                                app.enqueue(chat_id, job);
                            }
                        }
                        return;
                    }
                    app.album_quiet.saturating_sub(quiet_for).max(Duration::from_millis(50))
                };
                tokio::time::sleep(wait).await;
            }
        });
    }
}

/// A collected album as one media event (guarded by its last update id), then the jobs that
/// waited for it.
fn album_jobs(album: Album) -> Vec<Job> {
    let mut files = album.files.into_iter();
    let last = album.update_ids.iter().copied().max().unwrap_or_default();
    let event = files.next().map(|first| {
        let media = Media { kind: first.kind, file_id: first.file_id, caption: album.caption, more: files.collect() };
        (album.sender, last, EventKind::Media { media })
    });
    let mut jobs = vec![Job {
        update_ids: album.update_ids,
        press: None,
        notice: None,
        event,
        finished: None,
        tell: None,
        reload: false,
    }];
    jobs.extend(album.waiting);
    jobs
}

/// The values of the `reload_failed` text: how many problems, and the first of them (escaped,
/// short enough for one message).
fn reload_failure_values(problems: usize, report: &str) -> minijinja::Value {
    const MAX_DETAILS: usize = 1500;
    let mut details: String = report.chars().take(MAX_DETAILS).collect();
    if details.len() < report.len() {
        details.push_str("\n…");
    }
    minijinja::Value::from(minijinja::value::Serde(serde_json::json!({
        "problems": problems,
        // The text's template escapes it.
        "details": details.trim_end(),
    })))
}
