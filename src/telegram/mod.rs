//! The Telegram adapter behind `postflow run`: updates from teloxide (long polling or a webhook)
//! become engine events, effects become Bot API calls; access control, flood control, albums,
//! "typing…" and graceful shutdown live here.

pub mod gate;
pub mod inbound;
pub mod outbound;
pub mod pace;
pub mod startup;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use teloxide::dispatching::{Dispatcher, UpdateHandler};
use teloxide::prelude::*;
use teloxide::types::AllowedUpdate;
use teloxide::update_listeners::{Polling, webhooks};

use crate::config::Bundle;
use crate::driver::{Delivery, Driver};
use crate::engine::event::{Effect, Event, EventKind, Media, MediaFile};
use crate::engine::{self};
use crate::store::{Store, User};
use gate::{FloodLimits, Gate, Verdict};
use inbound::{FromChat, Inbound, Incoming, Sender};
use outbound::{Press, Telegram};

/// A source of "now" in Unix seconds (the system clock, or a test's clock).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

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
    pub http_addr: SocketAddr,
    pub clock: Clock,
    pub observer: Option<Observer>,
    /// Resolves when the bot should stop (SIGINT/SIGTERM in the binary).
    pub shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
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
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            clock: Arc::new(|| chrono::Utc::now().timestamp()),
            observer: None,
            shutdown: Box::pin(termination_signal()),
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

/// The bot client for `api_url` (a trailing slash is fine).
pub fn connect(token: &str, api_url: &str) -> Result<Bot, RunError> {
    // No trailing slash: teloxide appends path segments, and `…//bot…` would miss.
    let api_url = url::Url::parse(api_url.trim_end_matches('/'))
        .map_err(|e| RunError::Startup(format!("TELEGRAM_API_URL {api_url} is not a URL: {e}")))?;
    Ok(Bot::new(token).set_api_url(api_url))
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
pub async fn run(bundle: Arc<Bundle>, store: Store, options: RunOptions) -> Result<(), RunError> {
    let bot = connect(&options.bot_token, &options.api_url)?;
    let started = startup::check(&bot, &options.api_url, &options.channel).await.map_err(RunError::Startup)?;
    startup::set_commands(&bot, &bundle).await.map_err(RunError::Startup)?;
    tracing::info!(bot = %started.bot_username, channel = started.channel_id.0, "connected to Telegram");
    let app = Arc::new(App {
        tg: Telegram { bot: bot.clone(), pace: Arc::new(pace::Pace::new(pace::TELEGRAM)) },
        driver: Arc::new(Driver::new(bundle.clone(), store)),
        gate: Gate::new(options.authorized.iter().copied(), options.flood, options.refusal_quiet),
        bot_username: started.bot_username.clone(),
        clock: options.clock.clone(),
        observer: options.observer.clone(),
        album_quiet: options.album_quiet,
        chat_locks: Mutex::new(HashMap::new()),
        albums: Mutex::new(HashMap::new()),
        collectors: tokio::sync::Mutex::new(Vec::new()),
    });
    let handler_app = app.clone();
    let handler: UpdateHandler<std::convert::Infallible> = dptree::entry().endpoint(move |update: Update| {
        let app = handler_app.clone();
        async move {
            app.on_update(update).await;
            Ok(())
        }
    });
    let mut dispatcher = Dispatcher::builder(bot.clone(), handler).default_handler(|_| async {}).build();
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
            let webhook = webhooks::Options::new(options.http_addr, url);
            let (listener, stop, router) = webhooks::axum_to_router(bot.clone(), webhook)
                .await
                .map_err(|e| RunError::Startup(format!("Telegram refused the webhook: {e}")))?;
            let tcp = tokio::net::TcpListener::bind(options.http_addr)
                .await
                .map_err(|e| RunError::Startup(format!("cannot listen on HTTP_ADDR {}: {e}", options.http_addr)))?;
            let server = tokio::spawn(async move {
                if let Err(error) = axum::serve(tcp, router).with_graceful_shutdown(stop).await {
                    tracing::error!("the webhook server failed: {error}");
                }
            });
            dispatcher.dispatch_with_listener(listener, errors).await;
            let _ = server.await;
        }
        None => {
            let polling = Polling::builder(bot.clone())
                .timeout(Duration::from_secs(10))
                .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery])
                .delete_webhook()
                .await
                .build();
            dispatcher.dispatch_with_listener(polling, errors).await;
        }
    }
    // Albums still being collected are handled before the store closes.
    let collectors = std::mem::take(&mut *app.collectors.lock().await);
    for collector in collectors {
        let _ = collector.await;
    }
    tracing::info!("stopped");
    Ok(())
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
    /// One lock per chat: a chat's events are handled and delivered one after another.
    chat_locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    /// Albums being collected, by (chat, media group).
    albums: Mutex<HashMap<(i64, String), Album>>,
    collectors: tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

struct Album {
    /// Every update of the album, in arrival order.
    update_ids: Vec<u64>,
    sender: Sender,
    files: Vec<MediaFile>,
    caption: Option<String>,
    last_part: Instant,
}

/// Whether an update is dealt with, or waits in an album being collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    Done { ended: bool },
    InAlbum,
}

/// The most files Telegram puts in one album.
const MAX_ALBUM: usize = 10;

impl App {
    async fn on_update(self: &Arc<Self>, update: Update) {
        let update_id = u64::from(update.id.0);
        let chat_id = update.chat().map_or(0, |chat| chat.id.0);
        if let Taken::Done { ended } = self.take_update(update_id, update).await {
            self.report(chat_id, &[update_id], ended);
        }
    }

    /// Tells the observer that updates are dealt with.
    fn report(&self, chat_id: i64, update_ids: &[u64], ended: bool) {
        if let Some(observer) = &self.observer {
            update_ids.iter().for_each(|&update_id| observer(&Report { chat_id, update_id, ended }));
        }
    }

    async fn take_update(self: &Arc<Self>, update_id: u64, update: Update) -> Taken {
        let FromChat { chat_id, sender, incoming } = match inbound::read(&update, &self.bot_username) {
            Inbound::Chat(from_chat) => from_chat,
            Inbound::Ignore(reason) => {
                tracing::debug!(update_id, "ignored {reason}");
                return Taken::Done { ended: false };
            }
        };
        // The second and later files of an album join the first without another check.
        if let Incoming::AlbumPart { group, file, caption } = &incoming
            && self.join_album(chat_id, update_id, group, file, caption)
        {
            return Taken::InAlbum;
        }
        // An album still being collected in this chat came first: handle it first.
        if !matches!(incoming, Incoming::AlbumPart { .. }) {
            self.flush_albums(chat_id).await;
        }
        let mut press = match &incoming {
            Incoming::Press { query_id, .. } => Some(Press { query_id: query_id.clone(), answered: false }),
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
        let notice = match verdict {
            Verdict::Admit => None,
            Verdict::Refuse => Some("access_denied"),
            Verdict::WarnFlood => Some("flood_warning"),
            Verdict::Ignore => None,
        };
        if verdict != Verdict::Admit {
            if let Some(press) = press.as_mut() {
                outbound::answer(&self.tg, press, None).await;
            }
            if let Some(key) = notice {
                self.notify(chat_id, key).await;
            }
            return Taken::Done { ended: false };
        }
        let kind = match incoming {
            Incoming::Event(kind) => kind,
            Incoming::Press { data, message_id, .. } => EventKind::Button { data, message_id: Some(message_id) },
            Incoming::AlbumPart { group, file, caption } => {
                self.start_album(chat_id, update_id, sender, group, file, caption).await;
                return Taken::InAlbum;
            }
            Incoming::Unsupported => {
                self.notify(chat_id, "unsupported_message").await;
                EventKind::Resume
            }
        };
        let ended = self.handle(chat_id, update_id, sender, kind, press).await;
        Taken::Done { ended }
    }

    /// Sends a menu text outside any conversation.
    async fn notify(&self, chat_id: i64, key: &str) {
        let Some(text) = engine::standalone_text(&self.driver.bundle, key) else {
            tracing::warn!("menu text `{key}` is missing or does not render");
            return;
        };
        let message = crate::engine::event::OutMessage { text, media: None, keyboard: Default::default() };
        if let Err(error) = outbound::send(&self.tg, chat_id, pace::Priority::FollowUp, &message).await {
            tracing::warn!(chat_id, "could not send `{key}`: {error}");
        }
    }

    fn chat_lock(&self, chat_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.chat_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(chat_id).or_default().clone()
    }

    /// Hands one event to the engine and delivers what it says. The press is answered as soon
    /// as the engine produces the answer, and "typing…" shows while an action runs. Returns
    /// whether the conversation ended.
    async fn handle(
        &self,
        chat_id: i64,
        update_id: u64,
        sender: Sender,
        kind: EventKind,
        press: Option<Press>,
    ) -> bool {
        let lock = self.chat_lock(chat_id);
        let _turn = lock.lock().await;
        let now = (self.clock)();
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
        let mut job = tokio::task::spawn_blocking(move || {
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
                        if let Some(press) = press.as_mut() {
                            outbound::answer(&self.tg, press, text.as_deref()).await;
                        }
                    }
                    Effect::RunAction { .. } if typing.is_none() => {
                        // Shown at once, then renewed while the action runs (it fades after ~5 s).
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
        let mut ended = false;
        match outcome {
            Ok(Ok(Some(handled))) => {
                ended = handled.effects.iter().any(|effect| matches!(effect, Effect::End));
                let _ = outbound::deliver(&self.tg, chat_id, handled.effects, press.as_mut()).await;
            }
            Ok(Ok(None)) => {
                tracing::info!(chat_id, update_id, "an update seen before was delivered again; skipped");
                if let Some(press) = press.as_mut() {
                    outbound::answer(&self.tg, press, None).await;
                }
            }
            Ok(Err(error)) => {
                tracing::error!(chat_id, update_id, "the store failed: {error}");
                if let Some(press) = press.as_mut() {
                    outbound::answer(&self.tg, press, None).await;
                }
                self.notify(chat_id, "error_store_failed").await;
            }
            Err(error) => {
                tracing::error!(chat_id, update_id, "handling an update panicked: {error}");
                self.notify(chat_id, "internal_error").await;
            }
        }
        ended
    }

    /// Hands a collected album to the engine as one media event.
    async fn handle_album(&self, chat_id: i64, album: Album) {
        let mut files = album.files.into_iter();
        let Some(first) = files.next() else { return };
        let media = Media { kind: first.kind, file_id: first.file_id, caption: album.caption, more: files.collect() };
        let last = album.update_ids.iter().copied().max().unwrap_or_default();
        let ended = self.handle(chat_id, last, album.sender, EventKind::Media { media }, None).await;
        self.report(chat_id, &album.update_ids, ended);
    }

    /// Handles at once the albums of a chat still being collected (a later update must not
    /// overtake them).
    async fn flush_albums(&self, chat_id: i64) {
        let open: Vec<Album> = {
            let mut albums = self.albums.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<(i64, String)> = albums.keys().filter(|(chat, _)| *chat == chat_id).cloned().collect();
            let mut open: Vec<Album> = keys.iter().filter_map(|key| albums.remove(key)).collect();
            open.sort_by_key(|album| album.update_ids.first().copied());
            open
        };
        for album in open {
            self.handle_album(chat_id, album).await;
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
        let mut albums = self.albums.lock().unwrap_or_else(|p| p.into_inner());
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

    /// Opens an album with its first file and hands it to the engine once no more files come.
    async fn start_album(
        self: &Arc<Self>,
        chat_id: i64,
        update_id: u64,
        sender: Sender,
        group: String,
        file: MediaFile,
        caption: Option<String>,
    ) {
        let key = (chat_id, group);
        let album =
            Album { update_ids: vec![update_id], sender, files: vec![file], caption, last_part: Instant::now() };
        self.albums.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), album);
        let app = self.clone();
        let collector = tokio::spawn(async move {
            let album = loop {
                let wait = {
                    let mut albums = app.albums.lock().unwrap_or_else(|p| p.into_inner());
                    let Some(album) = albums.get(&key) else { return };
                    let quiet_for = album.last_part.elapsed();
                    if quiet_for >= app.album_quiet {
                        match albums.remove(&key) {
                            Some(album) => break album,
                            None => return,
                        }
                    }
                    app.album_quiet - quiet_for
                };
                tokio::time::sleep(wait).await;
            };
            app.handle_album(chat_id, album).await;
        });
        let mut collectors = self.collectors.lock().await;
        collectors.retain(|c| !c.is_finished());
        collectors.push(collector);
    }
}
