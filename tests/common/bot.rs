//! Runs the real `postflow run` code (teloxide, engine, redb) in-process against the fake Bot
//! API server, with a test clock, and mirrors the chat for conversation scripts.

#![allow(dead_code)]

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::Path;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use postflow::actions::CATALOGUE;
use postflow::ai::Ai;
use postflow::config::Bundle;
use postflow::config::bundle::MediaKind;
use postflow::console::{Screen, Shown, TurnOutput};
use postflow::conversation::{Delivered, Transport};
use postflow::engine::codec::CallbackData;
use postflow::engine::event::{EventKind, InlineButton, Keyboard, Media, MediaFile, OutMessage};
use postflow::engine::session::Session;
use postflow::scheduler::clock::ManualClock;
use postflow::scheduler::publisher::PublishPolicy;
use postflow::store::Store;
use postflow::telegram::gate::FloodLimits;
use postflow::telegram::pace::Limits;
use postflow::telegram::{Report, RunError, RunOptions};

use super::fake_telegram::{self, FakeTelegram, Output};

/// How long a test waits for the bot to finish an update before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The repository root: the shipped configuration.
pub fn shipped_config() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn load_bundle(dir: &Path) -> Arc<Bundle> {
    let loaded = postflow::analytics::load_config(dir, CATALOGUE, chrono_tz::Asia::Yerevan);
    match loaded.result {
        Ok(bundle) => Arc::new(bundle),
        Err(diagnostics) => panic!("{}", postflow::config::render_diagnostics(&diagnostics, &loaded.sources)),
    }
}

/// Updates the bot has dealt with, and a way to wait for them.
#[derive(Default)]
struct Done {
    ids: Mutex<HashSet<u64>>,
    ended: Mutex<HashSet<u64>>,
    changed: Condvar,
}

/// A running bot and its fake Telegram.
pub struct Bot {
    pub rt: tokio::runtime::Runtime,
    pub fake: FakeTelegram,
    /// The bot's store (the same database the bot writes).
    pub store: Option<Store>,
    pub store_path: std::path::PathBuf,
    pub clock: Arc<ManualClock>,
    /// Where the bot's HTTP server is, with `Setup::click_tracking` or `Setup::serve_http`.
    pub http_base: Option<String>,
    /// The bot's hot reload, with `Setup::hot_reload`.
    pub reloader: Option<Arc<postflow::reload::Reloader>>,
    done: Arc<Done>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), RunError>>>,
    _dir: tempfile::TempDir,
}

/// Knobs for a test bot.
pub struct Setup {
    pub authorized: Vec<i64>,
    pub flood: FloodLimits,
    pub album_quiet: Duration,
    /// The language model (offline unless a test points it at the fake OpenAI server).
    pub ai: Arc<Ai>,
    /// Telegram's rates as the bot keeps them.
    pub limits: Limits,
    pub publish: PublishPolicy,
    /// Serve tracked CTA links on a free local port (`Bot::http_base`).
    pub click_tracking: bool,
    /// Serve health and metrics on a free local port (`Bot::http_base`), without tracked links.
    pub serve_http: bool,
    /// Count CTA clicks through deep links into the bot (`CLICK_TRACKING=deep-link`).
    pub deep_links: bool,
    /// Watch the configuration folder and reload it (as `postflow run` does).
    pub hot_reload: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            authorized: (1000..1100).collect(),
            flood: FloodLimits { max_updates: 1000, window: Duration::from_secs(10), mute: Duration::from_secs(60) },
            album_quiet: Duration::from_millis(300),
            ai: Arc::new(Ai::offline()),
            limits: postflow::telegram::pace::TELEGRAM,
            publish: PublishPolicy { backoff: Duration::from_millis(50), ..PublishPolicy::default() },
            click_tracking: false,
            serve_http: false,
            deep_links: false,
            hot_reload: false,
        }
    }
}

impl Bot {
    /// Starts a fake Telegram and the bot on the shipped configuration.
    pub fn start(setup: Setup) -> Bot {
        Bot::start_in(shipped_config(), setup)
    }

    pub fn start_in(config: &Path, setup: Setup) -> Bot {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let fake = rt.block_on(FakeTelegram::start());
        let dir = tempfile::tempdir().unwrap();
        let store_path = dir.path().join("postflow.redb");
        let mut bot = Bot {
            rt,
            fake,
            store: None,
            store_path,
            clock: Arc::new(ManualClock::at(1_795_672_800)),
            http_base: None,
            reloader: None,
            done: Arc::new(Done::default()),
            stop: None,
            task: None,
            _dir: dir,
        };
        bot.launch(config, setup);
        bot
    }

    fn launch(&mut self, config: &Path, setup: Setup) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into()))
            .with_test_writer()
            .try_init();
        let bundle = load_bundle(config);
        let store = Store::open(&self.store_path).unwrap();
        self.store = Some(store.clone());
        let mut options = RunOptions::new(
            fake_telegram::TOKEN.to_string(),
            &format!("{}/", self.fake.url),
            format!("@{}", fake_telegram::CHANNEL_NAME),
            setup.authorized,
        );
        options.flood = setup.flood;
        options.limits = setup.limits;
        options.publish = setup.publish;
        options.album_quiet = setup.album_quiet;
        options.clock = self.clock.clone();
        if setup.click_tracking || setup.serve_http {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            options.http_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
            let base = format!("http://127.0.0.1:{port}");
            if setup.click_tracking {
                options.public_base_url = Some(base.clone());
            }
            self.http_base = Some(base);
        }
        if setup.deep_links {
            options.click_tracking = postflow::settings::ClickTracking::DeepLink;
        }
        let done = self.done.clone();
        options.observer = Some(Arc::new(move |report: &Report| {
            let mut ids = done.ids.lock().unwrap_or_else(|p| p.into_inner());
            ids.insert(report.update_id);
            if report.ended {
                done.ended.lock().unwrap_or_else(|p| p.into_inner()).insert(report.update_id);
            }
            done.changed.notify_all();
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        options.shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        self.stop = Some(stop);
        let live = if setup.hot_reload {
            let reloader = postflow::reload::Reloader::new(config.to_path_buf(), chrono_tz::Asia::Yerevan, bundle);
            options.reload = Some(reloader.clone());
            self.reloader = Some(reloader.clone());
            reloader.live()
        } else {
            postflow::config::live::LiveBundle::new(bundle)
        };
        self.task = Some(self.rt.spawn(postflow::telegram::run(live, store, setup.ai, options)));
        // Wait until the bot polls.
        let started = Instant::now();
        while !self.fake.calls().iter().any(|c| c.method == "getUpdates") {
            if let Some(task) = &self.task
                && task.is_finished()
            {
                let result = self.rt.block_on(self.task.take().unwrap()).unwrap();
                panic!("the bot stopped at start: {result:?}");
            }
            assert!(started.elapsed() < PATIENCE, "the bot never started polling; calls: {:?}", self.fake.calls());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the bot gracefully and returns what `run` returned.
    pub fn shutdown(&mut self) -> Result<(), RunError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = match self.task.take() {
            Some(task) => self.rt.block_on(task).unwrap_or_else(|panic| Err(RunError::Startup(panic.to_string()))),
            None => Ok(()),
        };
        self.store = None;
        result
    }

    /// Stops the bot and starts it again on the same store and fake Telegram.
    pub fn restart(&mut self, setup: Setup) {
        self.restart_after(setup, |_| {});
    }

    /// Stops the bot, lets `change` work on its store while it is down (as an operator, or a
    /// crash, would leave it), and starts it again.
    pub fn restart_after(&mut self, setup: Setup, change: impl FnOnce(&Store)) {
        self.shutdown().unwrap();
        // The bot's last handles on the store go with its tasks.
        let started = Instant::now();
        loop {
            match Store::open(&self.store_path) {
                Ok(store) => {
                    change(&store);
                    drop(store);
                    break;
                }
                Err(_) if started.elapsed() < PATIENCE => std::thread::sleep(Duration::from_millis(20)),
                Err(error) => panic!("the store stayed locked after shutdown: {error}"),
            }
        }
        self.launch(shipped_config(), setup);
    }

    /// Waits (up to the test patience) until `ready` holds.
    pub fn wait_for(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !ready() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("the bot is running")
    }

    /// Waits until the bot has dealt with every one of these updates.
    pub fn wait(&self, update_ids: &[i64]) {
        let deadline = Instant::now() + PATIENCE;
        let mut ids = self.done.ids.lock().unwrap_or_else(|p| p.into_inner());
        while !update_ids.iter().all(|id| ids.contains(&(*id as u64))) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the bot did not finish updates {update_ids:?} in {PATIENCE:?}");
            ids = self.done.changed.wait_timeout(ids, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Whether one of these updates ended a conversation.
    pub fn ended(&self, update_ids: &[i64]) -> bool {
        let ended = self.done.ended.lock().unwrap_or_else(|p| p.into_inner());
        update_ids.iter().any(|id| ended.contains(&(*id as u64)))
    }

    /// A user types; returns what the bot showed in reply.
    pub fn say(&self, user: i64, text: &str) -> Vec<Output> {
        let id = self.fake.send_text(user, text);
        self.wait(&[id]);
        self.fake.outputs_after(user, id)
    }

    /// A user presses a button by label on the newest keyboard.
    pub fn press(&self, user: i64, label: &str) -> Vec<Output> {
        let id = self.fake.press_label(user, label).unwrap_or_else(|| panic!("no button {label:?} in chat {user}"));
        self.wait(&[id]);
        self.fake.outputs_after(user, id)
    }

    /// Runs a shipped report over all time on the bot's store (as of 2026-11-26, with the
    /// channel link the bot noted) and hands it to `look`.
    pub fn report_all<T>(&self, id: &str, look: impl FnOnce(&postflow::analytics::Report<'_>) -> T) -> T {
        let bundle = load_bundle(shipped_config());
        let given = [("period".to_string(), "all".to_string())].into();
        let context = postflow::analytics::SourceContext {
            timezone: chrono_tz::Asia::Yerevan,
            channel_link: self.store().channel_link().unwrap(),
        };
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        let report = postflow::analytics::report(&bundle, id, &given, self.store(), context, today).unwrap();
        look(&report)
    }

    pub fn session(&self, user: i64) -> Option<Session> {
        self.store().load_session(user).unwrap()
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Plain text of outputs, joined.
pub fn plain(outputs: &[Output]) -> String {
    outputs.iter().map(|o| o.plain.clone()).collect::<Vec<_>>().join("\n")
}

/// A conversation script's turns sent through the running bot.
pub struct TelegramChat<'a> {
    pub bot: &'a Bot,
    pub screen: Screen,
}

impl Transport for TelegramChat<'_> {
    fn deliver(&mut self, user: i64, now: i64, kind: EventKind) -> anyhow::Result<Delivered> {
        self.bot.clock.set(now);
        let fake = &self.bot.fake;
        let update_ids = match kind {
            EventKind::Text { text } => vec![fake.send_text(user, &text)],
            EventKind::Command { name, args } => vec![fake.send_text(user, format!("/{name} {args}").trim_end())],
            EventKind::Button { data, message_id } => {
                vec![fake.press(user, message_id.ok_or_else(|| anyhow::anyhow!("a press without a message"))?, &data)]
            }
            EventKind::Media { media } if media.is_album() => {
                let files: Vec<(&str, &str)> = media.files().map(|(kind, id)| (kind.name(), id)).collect();
                fake.send_album(user, &files)
            }
            EventKind::Media { media } => vec![fake.send_media(user, media.kind.name(), &media.file_id)],
            other => anyhow::bail!("a script cannot send {other:?} through Telegram"),
        };
        self.bot.wait(&update_ids);
        let mut output = TurnOutput::default();
        for update_id in &update_ids {
            for sent in fake.outputs_after(user, *update_id) {
                let shown = Shown { id: sent.message_id, message: out_message(&sent) };
                self.screen.record(shown.clone(), sent.edited);
                output.messages.push((shown, sent.edited));
            }
            output.answers.extend(fake.answers().into_iter().filter(|a| a.update_id == *update_id).map(|a| a.text));
        }
        let session = self.bot.session(user).unwrap_or_else(|| Session::new(user, user));
        output.ended = self.bot.ended(&update_ids);
        Ok(Delivered { output, session })
    }

    fn screen(&self) -> &Screen {
        &self.screen
    }

    fn store(&self) -> &Store {
        self.bot.store()
    }
}

/// What the fake saw, as the engine's message type.
pub fn out_message(sent: &Output) -> OutMessage {
    let kind_of = |name: &str| serde_json::from_value::<MediaKind>(serde_json::json!(name)).unwrap();
    let media = sent.media.split_first().map(|((kind, file_id), rest)| Media {
        kind: kind_of(kind),
        file_id: file_id.clone(),
        caption: None,
        more: rest.iter().map(|(kind, file_id)| MediaFile { kind: kind_of(kind), file_id: file_id.clone() }).collect(),
    });
    let inline = sent.inline_rows();
    let reply = sent.reply_buttons();
    let keyboard = if !inline.is_empty() {
        Keyboard::Inline(
            inline
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|(label, data)| InlineButton {
                            label: Cow::Owned(label),
                            data: CallbackData::from_wire(&data).expect("engine-made callback data"),
                        })
                        .collect()
                })
                .collect(),
        )
    } else if !reply.is_empty() {
        Keyboard::Reply(vec![reply])
    } else {
        Keyboard::None
    };
    OutMessage { text: sent.html.clone(), media, keyboard, ..Default::default() }
}
