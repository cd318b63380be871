//! A fake Telegram Bot API server on 127.0.0.1 for tests and benchmarks. It speaks the JSON
//! shapes teloxide parses and is as strict as Telegram where it matters to postflow: text
//! 1–4096 and captions ≤ 1024 UTF-16 units after entity parsing, callback data 1–64 bytes, valid
//! HTML, known chats and file ids, the bot's rights in the channel, "message is not modified",
//! callback answers within 15 s, and the rate limits (1 message/s per private chat, 20/min per
//! channel, 30/s overall) answered with 429 `retry_after`. Every breach by the bot is recorded
//! as a violation. Faults can be injected: 429 storms, 5xx bursts, slow answers, dropped
//! connections. Tests inject updates (messages, albums, presses) as users would.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State as Extract};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

pub const TOKEN: &str = "7000001:AAFakeTokenForTestsOnly_abcdefghijk";
pub const BOT_ID: i64 = 7_000_001;
pub const BOT_USERNAME: &str = "shop_test_bot";
pub const CHANNEL_ID: i64 = -1_001_234_567_890;
pub const CHANNEL_NAME: &str = "time_2_shopping";

/// Telegram's limits as the fake enforces them.
const MAX_TEXT: usize = 4096;
const MAX_CAPTION: usize = 1024;
const MAX_CALLBACK_DATA: usize = 64;
const CALLBACK_DEADLINE: Duration = Duration::from_secs(15);
/// A little slack for the time between the bot's decision to send and the request's arrival.
const RATE_SLACK: Duration = Duration::from_millis(100);

const SEND_METHODS: &[&str] =
    &["sendMessage", "sendPhoto", "sendVideo", "sendAnimation", "sendDocument", "sendMediaGroup", "copyMessage"];

/// Faults to inject into the bot's next calls (not into getUpdates).
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// The next N calls get 429 with this `retry_after`.
    pub too_many_requests: u32,
    pub retry_after: u32,
    /// The next N calls get 502 Bad Gateway.
    pub server_errors: u32,
    /// The next N calls lose their connection before an answer.
    pub dropped: u32,
    /// Every call waits this long before it is answered.
    pub delay: Duration,
}

/// A file the bot uploaded (a report sent as a document or photo).
#[derive(Debug, Clone)]
pub struct Upload {
    pub file_id: String,
    pub file_name: String,
    pub kind: String,
    pub data: Vec<u8>,
}

/// What the bot made visible in a chat: a message sent or edited.
#[derive(Debug, Clone)]
pub struct Output {
    pub chat_id: i64,
    pub message_id: i64,
    pub edited: bool,
    /// The HTML the bot sent (text or caption).
    pub html: String,
    /// The text as the user sees it (entities parsed).
    pub plain: String,
    /// `(kind, file_id)` of each media file; several for an album.
    pub media: Vec<(String, String)>,
    /// The reply markup as sent.
    pub markup: Option<Value>,
    pub at: Instant,
    /// Sent as a reply to this update (the newest update injected into the chat before it).
    pub after_update: i64,
    /// Sent with `disable_notification`.
    pub silent: bool,
    /// The `link_preview_options` as sent.
    pub link_preview: Option<Value>,
    /// The ids of every message this call made (one per file of an album).
    pub message_ids: Vec<i64>,
}

impl Output {
    /// Inline buttons as (label, callback data), row by row.
    pub fn inline_buttons(&self) -> Vec<(String, String)> {
        self.inline_rows().into_iter().flatten().collect()
    }

    /// Inline buttons as (label, callback data), by row.
    pub fn inline_rows(&self) -> Vec<Vec<(String, String)>> {
        inline_rows(self.markup.as_ref())
    }

    /// Labels of a reply keyboard.
    pub fn reply_buttons(&self) -> Vec<String> {
        let rows = self.markup.as_ref().and_then(|m| m.get("keyboard")).and_then(Value::as_array);
        rows.into_iter().flatten().filter_map(Value::as_array).flatten().map(|b| str_of(b, "text")).collect()
    }
}

/// A button answer the bot gave.
#[derive(Debug, Clone)]
pub struct Answer {
    pub query_id: String,
    /// The update that carried the press.
    pub update_id: i64,
    pub chat_id: i64,
    pub text: Option<String>,
    pub after: Duration,
}

/// Every request the bot made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub chat_id: Option<i64>,
    pub at: Instant,
    /// `None` when it succeeded; else the error description returned.
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
struct Stored {
    chat_id: i64,
    message_id: i64,
    date: i64,
    from_bot: bool,
    html: String,
    plain: String,
    media: Vec<(String, String)>,
    markup: Option<Value>,
    json: Value,
}

#[derive(Debug)]
struct Query {
    chat_id: i64,
    update_id: i64,
    at: Instant,
    answered: bool,
}

/// The bot's rights in the channel.
#[derive(Debug, Clone)]
pub struct ChannelRights {
    pub member: bool,
    pub admin: bool,
    pub can_post: bool,
    pub can_edit: bool,
    pub can_delete: bool,
}

#[derive(Default)]
struct State {
    users: HashMap<i64, (String, Option<String>)>,
    /// File ids users sent, with their kind (photo, video, animation, document).
    files: HashMap<String, String>,
    updates: VecDeque<(i64, Value)>,
    /// Every update ever injected, for redelivery.
    history: HashMap<i64, Value>,
    /// Updates handed out again whatever the offset (as after a bot crash before acknowledging).
    redelivered: VecDeque<Value>,
    next_update: i64,
    allowed_updates: Option<Vec<String>>,
    uploads: Vec<Upload>,
    /// The channel's member count.
    members: u64,
    messages: BTreeMap<(i64, i64), Stored>,
    next_message: HashMap<i64, i64>,
    last_update_in_chat: HashMap<i64, i64>,
    calls: Vec<Call>,
    outputs: Vec<Output>,
    outputs_by_chat: HashMap<i64, Vec<usize>>,
    answers: Vec<Answer>,
    queries: HashMap<String, Query>,
    next_query: u64,
    violations: Vec<String>,
    faults: Faults,
    chat_sends: HashMap<i64, Instant>,
    channel_sends: VecDeque<Instant>,
    all_sends: VecDeque<Instant>,
    webhook: Option<(String, Option<String>)>,
    /// A webhook delivery loop is running.
    pushing: bool,
    commands: Vec<(String, String)>,
    rights: Option<ChannelRights>,
    date: i64,
    /// The channel's rate: this many messages per window (Telegram: 20 a minute).
    channel_limit: (usize, Duration),
    /// Messages a second in all chats (Telegram: 30); benchmarks turn it off.
    overall_limit: usize,
    /// Channel sends are carried out at once but answered only after this long (a test kills
    /// the bot in between: the post is in the channel, the bot never heard so).
    channel_answer_hold: Duration,
    /// Pinned messages of the channel, in pin order.
    pinned: Vec<i64>,
}

/// The running fake server.
#[derive(Clone)]
pub struct FakeTelegram {
    /// `http://127.0.0.1:PORT`, for `TELEGRAM_API_URL`.
    pub url: String,
    state: Arc<Mutex<State>>,
    updates_ready: Arc<Notify>,
    activity: Arc<Notify>,
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

type Shared = FakeTelegram;

impl FakeTelegram {
    /// Starts the server on the current tokio runtime.
    pub async fn start() -> FakeTelegram {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let state = State {
            next_update: 100,
            next_query: 1,
            date: 1_795_672_800,
            rights: Some(ChannelRights { member: true, admin: true, can_post: true, can_edit: true, can_delete: true }),
            channel_limit: (20, Duration::from_secs(60)),
            overall_limit: 30,
            members: 1500,
            ..State::default()
        };
        let fake = FakeTelegram {
            url: format!("http://{addr}"),
            state: Arc::new(Mutex::new(state)),
            updates_ready: Arc::new(Notify::new()),
            activity: Arc::new(Notify::new()),
            client: reqwest::Client::new(),
            runtime: tokio::runtime::Handle::current(),
        };
        let app = Router::new().route("/{token}/{method}", post(handle)).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ----- set-up and faults ----------------------------------------------------------------

    /// Makes a file id known, as if a user had sent it earlier.
    pub fn know_file(&self, file_id: &str, kind: &str) {
        self.lock().files.insert(file_id.to_string(), kind.to_string());
    }

    /// Sets the channel's rate limit (tests shorten Telegram's minute).
    pub fn set_channel_limit(&self, messages: usize, window: Duration) {
        self.lock().channel_limit = (messages, window);
    }

    /// Turns the channel and overall rate limits off (benchmarks that measure the bot alone).
    pub fn rate_limits_off(&self) {
        let mut state = self.lock();
        state.channel_limit = (usize::MAX / 2, Duration::from_secs(60));
        state.overall_limit = usize::MAX / 2;
    }

    /// Holds the answers to channel sends (after carrying them out) for `hold`.
    pub fn hold_channel_answers(&self, hold: Duration) {
        self.lock().channel_answer_hold = hold;
    }

    /// Everything the bot made visible in the channel, in order.
    pub fn channel_posts(&self) -> Vec<Output> {
        self.outputs().into_iter().filter(|o| o.chat_id == CHANNEL_ID).collect()
    }

    /// Whether a message is (still) in a chat.
    pub fn has_message(&self, chat_id: i64, message_id: i64) -> bool {
        self.lock().messages.contains_key(&(chat_id, message_id))
    }

    /// The channel's pinned messages, in pin order.
    pub fn pinned(&self) -> Vec<i64> {
        self.lock().pinned.clone()
    }

    /// Changes the bot's rights in the channel (`None`: the bot is not in the channel).
    pub fn set_channel_rights(&self, rights: Option<ChannelRights>) {
        self.lock().rights = rights;
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    // ----- what users do --------------------------------------------------------------------

    /// Subscribers' reactions on a channel post change: Telegram sends the new totals (only to
    /// a bot that asked for `message_reaction_count`).
    pub fn react(&self, message_id: i64, counts: &[(&str, u64)]) -> i64 {
        let mut state = self.lock();
        let reactions: Vec<Value> = counts
            .iter()
            .map(|(emoji, total)| json!({ "type": { "type": "emoji", "emoji": emoji }, "total_count": total }))
            .collect();
        let update = json!({ "message_reaction_count": {
            "chat": channel_chat_json(), "message_id": message_id, "date": state.date, "reactions": reactions,
        }});
        let id = push_update(&mut state, update, CHANNEL_ID);
        drop(state);
        self.updates_changed();
        id
    }

    /// A user types a text (or a /command) in their private chat with the bot.
    pub fn send_text(&self, user: i64, text: &str) -> i64 {
        let mut fields = json!({ "text": text });
        if text.starts_with('/') {
            let length = text.split_whitespace().next().map_or(0, |c| c.encode_utf16().count());
            fields["entities"] = json!([{ "type": "bot_command", "offset": 0, "length": length }]);
        }
        self.user_message(user, fields)
    }

    /// A user sends one media file (`kind`: photo, video, animation, document).
    pub fn send_media(&self, user: i64, kind: &str, file_id: &str) -> i64 {
        self.user_message(user, media_fields(kind, file_id))
    }

    /// A user sends an album: one update per file, sharing a media group id.
    pub fn send_album(&self, user: i64, files: &[(&str, &str)]) -> Vec<i64> {
        let group = format!("group{}", self.lock().next_update);
        files
            .iter()
            .map(|(kind, file_id)| {
                let mut fields = media_fields(kind, file_id);
                fields["media_group_id"] = json!(group);
                self.user_message(user, fields)
            })
            .collect()
    }

    /// One file of an album, on its own (to interleave album parts with other updates).
    pub fn send_album_part(&self, user: i64, group: &str, kind: &str, file_id: &str) -> i64 {
        let mut fields = media_fields(kind, file_id);
        fields["media_group_id"] = json!(group);
        self.user_message(user, fields)
    }

    /// A user in a group the bot is in writes (the bot must ignore it).
    pub fn send_group_text(&self, user: i64, group_id: i64, text: &str) -> i64 {
        let mut state = self.lock();
        let message = json!({
            "message_id": 1, "date": state.date,
            "chat": { "id": group_id, "type": "group", "title": "Some group" },
            "from": user_json(user, &state.users), "text": text,
        });
        let id = push_update(&mut state, json!({ "message": message }), group_id);
        drop(state);
        self.updates_changed();
        id
    }

    /// A user edits an earlier message (the bot must ignore it).
    pub fn edit_text(&self, user: i64, message_id: i64, text: &str) -> i64 {
        let mut state = self.lock();
        state.users.entry(user).or_insert_with(|| (format!("User{user}"), None));
        let message = json!({
            "message_id": message_id, "date": state.date, "edit_date": state.date,
            "chat": private_chat_json(user, &state.users), "from": user_json(user, &state.users), "text": text,
        });
        let id = push_update(&mut state, json!({ "edited_message": message }), user);
        drop(state);
        self.updates_changed();
        id
    }

    /// Registers a user's name (before their first message) for the users table.
    pub fn name_user(&self, user: i64, first_name: &str, username: Option<&str>) {
        self.lock().users.insert(user, (first_name.to_string(), username.map(str::to_string)));
    }

    fn user_message(&self, user: i64, fields: Value) -> i64 {
        let mut state = self.lock();
        state.users.entry(user).or_insert_with(|| (format!("User{user}"), Some(format!("user{user}"))));
        for (kind, file_id) in media_of(&fields) {
            state.files.insert(file_id, kind);
        }
        let message_id = next_message_id(&mut state, user);
        let mut message = json!({
            "message_id": message_id, "date": state.date,
            "chat": private_chat_json(user, &state.users), "from": user_json(user, &state.users),
        });
        for (key, value) in fields.as_object().into_iter().flatten() {
            message[key] = value.clone();
        }
        let id = push_update(&mut state, json!({ "message": message }), user);
        drop(state);
        self.updates_changed();
        id
    }

    /// A user presses a button: `data` on the bot's message `message_id` in their chat.
    /// Returns the update id.
    pub fn press(&self, user: i64, message_id: i64, data: &str) -> i64 {
        let mut state = self.lock();
        let query_id = format!("q{}", state.next_query);
        state.next_query += 1;
        let message = state.messages.get(&(user, message_id)).map(|m| m.json.clone()).unwrap_or_else(
            || json!({ "chat": private_chat_json(user, &state.users), "message_id": message_id, "date": 0 }),
        );
        let query = json!({
            "id": query_id, "from": user_json(user, &state.users), "message": message,
            "chat_instance": format!("ci{user}"), "data": data,
        });
        let update_id = state.next_update;
        state.queries.insert(query_id, Query { chat_id: user, update_id, at: Instant::now(), answered: false });
        let id = push_update(&mut state, json!({ "callback_query": query }), user);
        drop(state);
        self.updates_changed();
        id
    }

    /// Presses the button labelled `label` (exactly, or the only one containing it) on the
    /// newest bot message in the chat that has inline buttons. Returns the update id.
    pub fn press_label(&self, user: i64, label: &str) -> Option<i64> {
        let (message_id, data) = self.find_button(user, label)?;
        Some(self.press(user, message_id, &data))
    }

    /// The newest message with inline buttons in a chat, and the button's data for `label`.
    pub fn find_button(&self, user: i64, label: &str) -> Option<(i64, String)> {
        let state = self.lock();
        let newest = state
            .messages
            .range((user, i64::MIN)..=(user, i64::MAX))
            .rev()
            .find(|(_, m)| m.markup.as_ref().is_some_and(|k| k.get("inline_keyboard").is_some()))?;
        let buttons: Vec<(String, String)> = inline_rows(newest.1.markup.as_ref()).into_iter().flatten().collect();
        let exact = buttons.iter().find(|(l, _)| l.trim() == label.trim());
        let found = exact.or_else(|| {
            let mut containing = buttons.iter().filter(|(l, _)| l.contains(label));
            match (containing.next(), containing.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        })?;
        Some((newest.1.message_id, found.1.clone()))
    }

    /// Hands an update out again, as Telegram does when the bot did not acknowledge it.
    pub fn redeliver(&self, update_id: i64) {
        let mut state = self.lock();
        let update = state.history.get(&update_id).cloned().expect("a known update");
        state.redelivered.push_back(update);
        drop(state);
        self.updates_ready.notify_waiters();
    }

    /// Deletes a bot message as if the user had cleared it (edits of it then fail).
    pub fn forget_message(&self, chat_id: i64, message_id: i64) {
        self.lock().messages.remove(&(chat_id, message_id));
    }

    fn updates_changed(&self) {
        self.updates_ready.notify_waiters();
        let webhook = self.lock().webhook.clone();
        if let Some((url, secret)) = webhook {
            self.push_to_webhook(url, secret);
        }
    }

    /// Delivers pending updates to the webhook, like Telegram does: one at a time, in order,
    /// retrying (one delivery loop at a time).
    fn push_to_webhook(&self, url: String, secret: Option<String>) {
        {
            let mut state = self.lock();
            if state.pushing {
                return;
            }
            state.pushing = true;
        }
        let fake = self.clone();
        self.runtime.spawn(async move {
            loop {
                let next = {
                    let mut state = fake.lock();
                    // Kinds the bot did not ask for are never delivered.
                    let allowed = state.allowed_updates.clone();
                    state.updates.retain(|(_, update)| wanted(allowed.as_deref(), update));
                    let next = state.updates.pop_front();
                    if next.is_none() {
                        state.pushing = false;
                    }
                    next
                };
                let Some((_, update)) = next else { return };
                let mut request = fake.client.post(&url).json(&update);
                if let Some(secret) = &secret {
                    request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
                }
                match request.send().await {
                    Ok(response) if response.status().is_success() => {}
                    _ => {
                        fake.lock().updates.push_front((update["update_id"].as_i64().unwrap_or(0), update));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
    }

    // ----- what tests look at ----------------------------------------------------------------

    /// The channel's member count from now on.
    pub fn set_members(&self, members: u64) {
        self.lock().members = members;
    }

    /// Files the bot uploaded, in order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.lock().uploads.clone()
    }

    /// The update kinds the bot last asked for (`allowed_updates` of getUpdates or setWebhook).
    pub fn allowed_updates(&self) -> Option<Vec<String>> {
        self.lock().allowed_updates.clone()
    }

    pub fn outputs(&self) -> Vec<Output> {
        self.lock().outputs.clone()
    }

    /// Outputs in a chat that answer the update `update_id` (sent after it was injected and
    /// before the next update of the chat).
    pub fn outputs_after(&self, chat_id: i64, update_id: i64) -> Vec<Output> {
        let state = self.lock();
        let in_chat = state.outputs_by_chat.get(&chat_id).into_iter().flatten();
        in_chat.map(|&i| &state.outputs[i]).filter(|o| o.after_update == update_id).cloned().collect()
    }

    pub fn answers(&self) -> Vec<Answer> {
        self.lock().answers.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn commands(&self) -> Vec<(String, String)> {
        self.lock().commands.clone()
    }

    /// The bot's breaches of Telegram's rules, plus presses never answered within 15 s.
    pub fn violations(&self) -> Vec<String> {
        let state = self.lock();
        let mut violations = state.violations.clone();
        for (id, query) in &state.queries {
            if !query.answered && query.at.elapsed() > CALLBACK_DEADLINE {
                violations.push(format!("the press {id} in chat {} was never answered", query.chat_id));
            }
        }
        violations
    }

    /// Presses not answered yet.
    pub fn unanswered_presses(&self) -> usize {
        self.lock().queries.values().filter(|q| !q.answered).count()
    }

    pub fn webhook(&self) -> Option<(String, Option<String>)> {
        self.lock().webhook.clone()
    }

    /// Resolves at the bot's next call (create it before checking, then await it).
    pub fn activity(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.activity.notified()
    }
}

/// The (label, callback data) rows of an inline keyboard markup.
fn inline_rows(markup: Option<&Value>) -> Vec<Vec<(String, String)>> {
    let rows = markup.and_then(|m| m.get("inline_keyboard")).and_then(Value::as_array);
    rows.into_iter()
        .flatten()
        .map(|row| {
            let buttons = row.as_array().into_iter().flatten();
            buttons.map(|b| (str_of(b, "text"), str_of(b, "callback_data"))).collect()
        })
        .collect()
}

fn str_of(value: &Value, key: &str) -> String {
    value.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The fields of a message carrying one media file, as Telegram sends them.
pub fn media_fields(kind: &str, file_id: &str) -> Value {
    let unique = format!("u-{file_id}");
    match kind {
        "photo" => json!({ "photo": [
            { "file_id": format!("{file_id}-small"), "file_unique_id": format!("{unique}-s"), "width": 90, "height": 90 },
            { "file_id": file_id, "file_unique_id": unique, "width": 1280, "height": 960 },
        ] }),
        "video" => json!({ "video": {
            "file_id": file_id, "file_unique_id": unique, "width": 1280, "height": 720, "duration": 12,
            "file_name": "clip.mp4", "mime_type": "video/mp4", "file_size": 1_048_576,
        } }),
        "animation" => json!({
            "animation": {
                "file_id": file_id, "file_unique_id": unique, "width": 480, "height": 270, "duration": 3,
                "file_name": "clip.mp4", "mime_type": "video/mp4",
            },
            "document": { "file_id": file_id, "file_unique_id": unique, "file_name": "clip.mp4", "mime_type": "video/mp4" },
        }),
        _ => {
            json!({ "document": { "file_id": file_id, "file_unique_id": unique, "file_name": "file.pdf", "mime_type": "application/pdf" } })
        }
    }
}

/// The (kind, file id) pairs a message carries.
fn media_of(fields: &Value) -> Vec<(String, String)> {
    if let Some(animation) = fields.get("animation") {
        return vec![("animation".into(), str_of(animation, "file_id"))];
    }
    if let Some(sizes) = fields.get("photo").and_then(Value::as_array) {
        return sizes.iter().map(|s| ("photo".to_string(), str_of(s, "file_id"))).collect();
    }
    for kind in ["video", "document"] {
        if let Some(file) = fields.get(kind) {
            return vec![(kind.to_string(), str_of(file, "file_id"))];
        }
    }
    Vec::new()
}

fn user_json(user: i64, users: &HashMap<i64, (String, Option<String>)>) -> Value {
    let (first_name, username) = users.get(&user).cloned().unwrap_or_else(|| (format!("User{user}"), None));
    let mut json = json!({ "id": user, "is_bot": false, "first_name": first_name, "language_code": "hy" });
    if let Some(username) = username {
        json["username"] = json!(username);
    }
    json
}

fn private_chat_json(user: i64, users: &HashMap<i64, (String, Option<String>)>) -> Value {
    let (first_name, username) = users.get(&user).cloned().unwrap_or_else(|| (format!("User{user}"), None));
    let mut json = json!({ "id": user, "type": "private", "first_name": first_name });
    if let Some(username) = username {
        json["username"] = json!(username);
    }
    json
}

fn channel_chat_json() -> Value {
    json!({ "id": CHANNEL_ID, "type": "channel", "title": "ShoppingTime", "username": CHANNEL_NAME })
}

fn bot_user_json() -> Value {
    json!({ "id": BOT_ID, "is_bot": true, "first_name": "Shop test bot", "username": BOT_USERNAME })
}

/// Whether Telegram delivers `update` under `allowed_updates`: all kinds named, or by default
/// (none named) every kind except chat_member, message_reaction and message_reaction_count.
fn wanted(allowed: Option<&[String]>, update: &Value) -> bool {
    const OPT_IN: [&str; 3] = ["chat_member", "message_reaction", "message_reaction_count"];
    let Some(kinds) = update.as_object() else { return false };
    let mut kinds = kinds.keys().filter(|k| *k != "update_id");
    match allowed {
        Some(allowed) if !allowed.is_empty() => kinds.any(|k| allowed.contains(k)),
        _ => kinds.any(|k| !OPT_IN.contains(&k.as_str())),
    }
}

fn push_update(state: &mut State, mut update: Value, chat_id: i64) -> i64 {
    let id = state.next_update;
    state.next_update += 1;
    update["update_id"] = json!(id);
    state.history.insert(id, update.clone());
    state.updates.push_back((id, update));
    state.last_update_in_chat.insert(chat_id, id);
    id
}

fn next_message_id(state: &mut State, chat_id: i64) -> i64 {
    let next = state.next_message.entry(chat_id).or_insert(1);
    let id = *next;
    *next += 1;
    id
}

// ----- the HTTP side ---------------------------------------------------------------------------

fn ok(result: Value) -> Response {
    axum::Json(json!({ "ok": true, "result": result })).into_response()
}

fn fail(code: u16, description: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(json!({ "ok": false, "error_code": code, "description": description }))).into_response()
}

fn too_many(retry_after: u32) -> Response {
    let body = json!({
        "ok": false, "error_code": 429, "description": format!("Too Many Requests: retry after {retry_after}"),
        "parameters": { "retry_after": retry_after },
    });
    (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
}

/// A response whose body breaks off: the client sees the connection drop mid-answer.
fn dropped_connection() -> Response {
    let parts: Vec<Result<&'static str, std::io::Error>> =
        vec![Ok("{\"ok\":"), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "dropped"))];
    let mut response = Response::new(Body::from_stream(futures_util::stream::iter(parts)));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn handle(
    Extract(fake): Extract<Shared>,
    Path((token, method)): Path<(String, String)>,
    request: Request,
) -> Response {
    if token != format!("bot{TOKEN}") {
        return fail(401, "Unauthorized");
    }
    // Method names are case-insensitive (teloxide sends `SendMessage`).
    let method = canonical(&method);
    let params = match read_params(request).await {
        Ok(params) => params,
        Err(problem) => return fail(400, &format!("Bad Request: {problem}")),
    };
    let (fault, delay) = if method == "getUpdates" { (None, Duration::ZERO) } else { take_fault(&fake) };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(fault) = fault {
        record(&fake, &method, &params, Some("injected fault".into()));
        return fault;
    }
    let response = match method.as_str() {
        "getUpdates" => {
            record(&fake, &method, &params, None);
            get_updates(&fake, &params).await
        }
        _ => {
            let result = {
                let mut state = fake.lock();
                dispatch(&mut state, &method, &params)
            };
            let error = match &result {
                Ok(_) => None,
                Err(reply) => Some(reply.description.clone()),
            };
            record(&fake, &method, &params, error);
            if method == "setWebhook" || method == "deleteWebhook" {
                fake.updates_changed();
            }
            let hold = fake.lock().channel_answer_hold;
            let to_channel = params.get("chat_id").and_then(as_i64) == Some(CHANNEL_ID)
                || as_str(params.get("chat_id")).is_some_and(|c| c == format!("@{CHANNEL_NAME}"));
            if to_channel && SEND_METHODS.contains(&method.as_str()) && result.is_ok() && !hold.is_zero() {
                fake.activity.notify_waiters();
                tokio::time::sleep(hold).await;
            }
            match result {
                Ok(value) => ok(value),
                Err(reply) if reply.code == 429 => too_many(reply.retry_after),
                Err(reply) => fail(reply.code, &reply.description),
            }
        }
    };
    fake.activity.notify_waiters();
    response
}

/// The Bot API's spelling of a method name.
fn canonical(method: &str) -> String {
    const KNOWN: &[&str] = &[
        "getMe",
        "getChat",
        "getChatMember",
        "setMyCommands",
        "deleteWebhook",
        "setWebhook",
        "getWebhookInfo",
        "getChatMemberCount",
        "getUpdates",
        "sendChatAction",
        "answerCallbackQuery",
        "deleteMessage",
        "editMessageText",
        "editMessageCaption",
        "pinChatMessage",
        "sendMessage",
        "sendPhoto",
        "sendVideo",
        "sendAnimation",
        "sendDocument",
        "sendMediaGroup",
        "copyMessage",
    ];
    KNOWN.iter().find(|known| known.eq_ignore_ascii_case(method)).map_or_else(|| method.to_string(), |k| k.to_string())
}

/// The fault the next call suffers, if any, and the delay every call suffers.
fn take_fault(fake: &Shared) -> (Option<Response>, Duration) {
    let mut state = fake.lock();
    let faults = &mut state.faults;
    let fault = if faults.dropped > 0 {
        faults.dropped -= 1;
        Some(dropped_connection())
    } else if faults.server_errors > 0 {
        faults.server_errors -= 1;
        Some(fail(502, "Bad Gateway"))
    } else if faults.too_many_requests > 0 {
        faults.too_many_requests -= 1;
        Some(too_many(faults.retry_after.max(1)))
    } else {
        None
    };
    (fault, faults.delay)
}

fn record(fake: &Shared, method: &str, params: &Map<String, Value>, error: Option<String>) {
    let chat_id = params.get("chat_id").and_then(as_i64);
    fake.lock().calls.push(Call { method: method.to_string(), chat_id, at: Instant::now(), error });
}

/// Reads JSON, form or multipart parameters into one map (multipart JSON fields parsed).
async fn read_params(request: Request) -> Result<Map<String, Value>, String> {
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| e.to_string())?;
        let mut params = Map::new();
        while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
            let name = field.name().unwrap_or_default().to_string();
            // An uploaded file: kept as `{upload: file name, data: base64}` for the method.
            if let Some(file_name) = field.file_name().map(str::to_string) {
                let bytes = field.bytes().await.map_err(|e| e.to_string())?;
                use base64::Engine;
                let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
                params.insert(name, json!({ "upload": file_name, "data": data }));
                continue;
            }
            let text = field.text().await.map_err(|e| e.to_string())?;
            let json_field = ["reply_markup", "media", "caption_entities", "entities", "link_preview_options"];
            let value = if json_field.contains(&name.as_str()) {
                serde_json::from_str(&text).map_err(|e| format!("field {name} is not JSON: {e}"))?
            } else {
                Value::String(text)
            };
            params.insert(name, value);
        }
        return Ok(params);
    }
    let bytes = axum::body::to_bytes(request.into_body(), 50 * 1024 * 1024).await.map_err(|e| e.to_string())?;
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err("the body is not a JSON object".into()),
    }
}

fn as_i64(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn as_str(value: Option<&Value>) -> Option<String> {
    value.and_then(|v| v.as_str().map(str::to_string).or_else(|| v.as_i64().map(|n| n.to_string())))
}

async fn get_updates(fake: &Shared, params: &Map<String, Value>) -> Response {
    let offset = params.get("offset").and_then(as_i64).unwrap_or(0);
    let timeout = params.get("timeout").and_then(as_i64).unwrap_or(0).clamp(0, 50) as u64;
    let limit = params.get("limit").and_then(as_i64).unwrap_or(100).clamp(1, 100) as usize;
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let ready = fake.updates_ready.notified();
        {
            let mut state = fake.lock();
            if state.webhook.is_some() {
                return fail(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                );
            }
            if let Some(allowed) = params.get("allowed_updates").and_then(Value::as_array) {
                state.allowed_updates = Some(allowed.iter().filter_map(|v| v.as_str().map(str::to_string)).collect());
            }
            // Updates before the offset are acknowledged: gone for good.
            while state.updates.front().is_some_and(|(id, _)| *id < offset) {
                state.updates.pop_front();
            }
            let allowed = state.allowed_updates.clone();
            let mut batch: Vec<Value> = state.redelivered.drain(..).collect();
            let fresh: Vec<Value> = state
                .updates
                .iter()
                .filter(|(_, update)| wanted(allowed.as_deref(), update))
                .take(limit)
                .map(|(_, update)| update.clone())
                .collect();
            batch.extend(fresh);
            if !batch.is_empty() || Instant::now() >= deadline {
                return ok(Value::Array(batch));
            }
        }
        let _ = tokio::time::timeout_at(deadline.into(), ready).await;
    }
}

struct Reply {
    code: u16,
    description: String,
    retry_after: u32,
}

fn bad(description: &str) -> Reply {
    Reply { code: 400, description: format!("Bad Request: {description}"), retry_after: 0 }
}

fn dispatch(state: &mut State, method: &str, params: &Map<String, Value>) -> Result<Value, Reply> {
    match method {
        "getMe" => Ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Shop test bot", "username": BOT_USERNAME,
            "can_join_groups": false, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false,
        })),
        "getChat" => {
            let chat = chat_of(state, params)?;
            if chat == CHANNEL_ID {
                if state.rights.as_ref().is_none_or(|r| !r.member) {
                    return Err(bad("chat not found"));
                }
                let mut info = channel_chat_json();
                info["accent_color_id"] = json!(0);
                info["max_reaction_count"] = json!(11);
                info["accepted_gift_types"] = json!({
                    "unlimited_gifts": false, "limited_gifts": false, "unique_gifts": false, "premium_subscription": false,
                });
                return Ok(info);
            }
            let mut info = private_chat_json(chat, &state.users);
            info["accent_color_id"] = json!(0);
            info["max_reaction_count"] = json!(11);
            info["accepted_gift_types"] = json!({
                "unlimited_gifts": false, "limited_gifts": false, "unique_gifts": false, "premium_subscription": false,
            });
            Ok(info)
        }
        "getChatMember" => {
            let chat = chat_of(state, params)?;
            let user = params.get("user_id").and_then(as_i64).unwrap_or(0);
            if chat != CHANNEL_ID || user != BOT_ID {
                return Ok(json!({ "status": "left", "user": user_json(user, &state.users) }));
            }
            match &state.rights {
                Some(r) if r.admin => Ok(json!({
                    "status": "administrator", "user": bot_user_json(), "can_be_edited": false, "is_anonymous": false,
                    "can_manage_chat": true, "can_delete_messages": r.can_delete, "can_manage_video_chats": false,
                    "can_restrict_members": false, "can_promote_members": false, "can_change_info": false,
                    "can_invite_users": true, "can_post_messages": r.can_post, "can_edit_messages": r.can_edit,
                    "can_post_stories": false, "can_edit_stories": false, "can_delete_stories": false,
                })),
                Some(r) if r.member => Ok(json!({ "status": "member", "user": bot_user_json() })),
                _ => Err(bad("chat not found")),
            }
        }
        "setMyCommands" => {
            let commands = params.get("commands").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut list = Vec::new();
            for command in &commands {
                let (name, description) = (str_of(command, "command"), str_of(command, "description"));
                let valid_name = (1..=32).contains(&name.len())
                    && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !valid_name || description.is_empty() || description.chars().count() > 256 {
                    state.violations.push(format!("setMyCommands: invalid command {name:?} / {description:?}"));
                    return Err(bad("BOT_COMMAND_INVALID"));
                }
                list.push((name, description));
            }
            state.commands = list;
            Ok(json!(true))
        }
        "deleteWebhook" => {
            state.webhook = None;
            Ok(json!(true))
        }
        "setWebhook" => {
            let url = as_str(params.get("url")).unwrap_or_default();
            let secret = as_str(params.get("secret_token"));
            state.webhook = if url.is_empty() { None } else { Some((url, secret)) };
            // Without `allowed_updates` the previous setting stays.
            if let Some(allowed) = params.get("allowed_updates").and_then(Value::as_array) {
                state.allowed_updates = Some(allowed.iter().filter_map(|v| v.as_str().map(str::to_string)).collect());
            }
            Ok(json!(true))
        }
        "getChatMemberCount" => {
            let chat = chat_of(state, params)?;
            if chat != CHANNEL_ID {
                return Err(bad("chat not found"));
            }
            Ok(json!(state.members))
        }
        "getWebhookInfo" => Ok(json!({
            "url": state.webhook.as_ref().map(|(u, _)| u.clone()).unwrap_or_default(),
            "has_custom_certificate": false, "pending_update_count": state.updates.len(),
        })),
        "sendChatAction" => {
            chat_of(state, params)?;
            Ok(json!(true))
        }
        "answerCallbackQuery" => answer_callback(state, params),
        "deleteMessage" => {
            let chat = chat_of(state, params)?;
            let id = params.get("message_id").and_then(as_i64).unwrap_or(0);
            match state.messages.remove(&(chat, id)) {
                Some(_) => Ok(json!(true)),
                None => Err(bad("message to delete not found")),
            }
        }
        "editMessageText" => edit_text(state, params),
        "editMessageCaption" => edit_caption(state, params),
        "pinChatMessage" => {
            let chat = chat_of(state, params)?;
            let id = params.get("message_id").and_then(as_i64).unwrap_or(0);
            if chat == CHANNEL_ID && state.rights.as_ref().is_none_or(|r| !r.admin || !r.can_edit) {
                return Err(refuse(state, method, "not enough rights to manage pinned messages in the chat"));
            }
            if !state.messages.contains_key(&(chat, id)) {
                return Err(bad("message to pin not found"));
            }
            state.pinned.push(id);
            Ok(json!(true))
        }
        method if SEND_METHODS.contains(&method) => send(state, method, params),
        _ => Err(Reply { code: 404, description: "Not Found".into(), retry_after: 0 }),
    }
}

/// The numeric chat id a call names, if Telegram would know it.
fn chat_of(state: &State, params: &Map<String, Value>) -> Result<i64, Reply> {
    let raw = params.get("chat_id").ok_or_else(|| bad("chat_id is empty"))?;
    if let Some(name) = raw.as_str().and_then(|s| s.strip_prefix('@')) {
        return if name.eq_ignore_ascii_case(CHANNEL_NAME) { Ok(CHANNEL_ID) } else { Err(bad("chat not found")) };
    }
    let id = as_i64(raw).ok_or_else(|| bad("chat_id is invalid"))?;
    if id == CHANNEL_ID || state.users.contains_key(&id) { Ok(id) } else { Err(bad("chat not found")) }
}

fn answer_callback(state: &mut State, params: &Map<String, Value>) -> Result<Value, Reply> {
    let id = as_str(params.get("callback_query_id")).unwrap_or_default();
    let text = as_str(params.get("text"));
    if let Some(text) = &text
        && text.chars().count() > 200
    {
        state.violations.push(format!("a button answer of {} characters (Telegram allows 200)", text.chars().count()));
        return Err(bad("MESSAGE_TOO_LONG"));
    }
    let too_old = "query is too old and response timeout expired or query id is invalid";
    let Some(query) = state.queries.get_mut(&id) else { return Err(bad(too_old)) };
    if query.answered {
        // Telegram refuses a second answer; a bot may try once after a redelivered update.
        return Err(bad(too_old));
    }
    query.answered = true;
    let after = query.at.elapsed();
    let (chat_id, update_id) = (query.chat_id, query.update_id);
    if after > CALLBACK_DEADLINE {
        state.violations.push(format!("the press {id} was answered after {after:?}"));
        return Err(bad(too_old));
    }
    state.answers.push(Answer { query_id: id, update_id, chat_id, text, after });
    Ok(json!(true))
}

/// Checks the rate limits for one more message to `chat`; a breach is a violation and a 429.
/// An album counts each of its files (`weight`) towards the channel and overall limits.
fn check_rate(state: &mut State, chat: i64, weight: usize) -> Result<(), Reply> {
    let now = Instant::now();
    let breach = if chat == CHANNEL_ID {
        let (limit, window) = state.channel_limit;
        while state.channel_sends.front().is_some_and(|t| now.duration_since(*t) >= window) {
            state.channel_sends.pop_front();
        }
        (state.channel_sends.len() + weight > limit)
            .then(|| format!("more than {limit} messages in {window:?} in the channel"))
    } else {
        state.chat_sends.get(&chat).and_then(|last| {
            let gap = now.duration_since(*last);
            (gap + RATE_SLACK < Duration::from_secs(1))
                .then(|| format!("two messages {} ms apart in private chat {chat}", gap.as_millis()))
        })
    };
    while state.all_sends.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
        state.all_sends.pop_front();
    }
    let breach = breach.or_else(|| {
        let limit = state.overall_limit;
        (state.all_sends.len() + weight > limit).then(|| format!("more than {limit} messages a second"))
    });
    if let Some(breach) = breach {
        state.violations.push(format!("rate limit: {breach}"));
        return Err(Reply { code: 429, description: "Too Many Requests: retry after 1".into(), retry_after: 1 });
    }
    if chat == CHANNEL_ID {
        state.channel_sends.extend(std::iter::repeat_n(now, weight));
    } else {
        state.chat_sends.insert(chat, now);
    }
    state.all_sends.extend(std::iter::repeat_n(now, weight));
    Ok(())
}

/// An uploaded file: Telegram's limits are 10 MB for a photo and 50 MB for other files; the
/// file gets a new file id and is kept for the test.
fn take_upload(state: &mut State, method: &str, upload: &Value, kind: &str) -> Result<String, Reply> {
    use base64::Engine;
    let name = str_of(upload, "upload");
    let data = base64::engine::general_purpose::STANDARD.decode(str_of(upload, "data")).unwrap_or_default();
    let limit = if kind == "photo" { 10 << 20 } else { 50 << 20 };
    if data.is_empty() {
        return Err(refuse(state, method, "file must be non-empty"));
    }
    if data.len() > limit {
        return Err(Reply { code: 413, description: "Request Entity Too Large".into(), retry_after: 0 });
    }
    let file_id = format!("uploaded-{}-{name}", state.uploads.len() + 1);
    state.files.insert(file_id.clone(), kind.to_string());
    state.uploads.push(Upload { file_id: file_id.clone(), file_name: name, kind: kind.to_string(), data });
    Ok(file_id)
}

/// A file id must be one a user sent, and be sent back as what it is.
fn check_file(state: &mut State, method: &str, file_id: &str, as_kind: &str) -> Result<(), Reply> {
    match state.files.get(file_id) {
        None => Err(refuse(state, method, "wrong file identifier/HTTP URL specified")),
        Some(kind) if kind != as_kind => {
            let problem = format!("type of file mismatch (a {kind} sent as {as_kind})");
            Err(refuse(state, method, &problem))
        }
        Some(_) => Ok(()),
    }
}

/// A violation: the bot sent something Telegram refuses.
fn refuse(state: &mut State, method: &str, description: &str) -> Reply {
    state.violations.push(format!("{method}: {description}"));
    bad(description)
}

/// Checks an inline or reply keyboard.
fn check_markup(state: &mut State, method: &str, markup: Option<&Value>) -> Result<Option<Value>, Reply> {
    let Some(markup) = markup else { return Ok(None) };
    if let Some(rows) = markup.get("inline_keyboard") {
        for button in rows.as_array().into_iter().flatten().filter_map(Value::as_array).flatten() {
            if str_of(button, "text").trim().is_empty() {
                return Err(refuse(state, method, "text buttons are unallowed in the inline keyboard"));
            }
            let data = button.get("callback_data").and_then(Value::as_str);
            let url = button.get("url").and_then(Value::as_str);
            match (data, url) {
                (Some(data), None) if (1..=MAX_CALLBACK_DATA).contains(&data.len()) => {}
                (None, Some(url))
                    if url.starts_with("http://") || url.starts_with("https://") || url.starts_with("tg://") => {}
                _ => return Err(refuse(state, method, "BUTTON_DATA_INVALID")),
            }
        }
    } else if let Some(rows) = markup.get("keyboard") {
        let labels = rows.as_array().into_iter().flatten().filter_map(Value::as_array).flatten();
        if labels.clone().any(|b| str_of(b, "text").trim().is_empty()) {
            return Err(refuse(state, method, "keyboard button text is empty"));
        }
    }
    Ok(Some(markup.clone()))
}

/// Parses a text or caption as Telegram would: its plain text, or the parse error.
fn parse_text(
    state: &mut State,
    method: &str,
    params: &Map<String, Value>,
    key: &str,
) -> Result<(String, String), Reply> {
    let html = as_str(params.get(key)).unwrap_or_default();
    let mode = as_str(params.get("parse_mode")).unwrap_or_default();
    let plain = if mode.eq_ignore_ascii_case("html") {
        parse_html(&html).map_err(|e| refuse(state, method, &format!("can't parse entities: {e}")))?
    } else {
        html.clone()
    };
    Ok((html, plain))
}

fn send(state: &mut State, method: &str, params: &Map<String, Value>) -> Result<Value, Reply> {
    let chat = chat_of(state, params)?;
    if chat == CHANNEL_ID && state.rights.as_ref().is_none_or(|r| !r.admin || !r.can_post) {
        return Err(refuse(state, method, "need administrator rights in the channel chat"));
    }
    let markup = check_markup(state, method, params.get("reply_markup"))?;
    let (html, plain, media) = match method {
        "sendMessage" => {
            let (html, plain) = parse_text(state, method, params, "text")?;
            let length = plain.encode_utf16().count();
            if plain.trim().is_empty() {
                return Err(refuse(state, method, "message text is empty"));
            }
            if length > MAX_TEXT {
                return Err(refuse(state, method, &format!("message is too long ({length} UTF-16 units)")));
            }
            (html, plain, Vec::new())
        }
        "sendMediaGroup" => {
            let items = params.get("media").and_then(Value::as_array).cloned().unwrap_or_default();
            if !(2..=10).contains(&items.len()) {
                return Err(refuse(state, method, "media group must contain 2-10 items"));
            }
            if markup.is_some() {
                return Err(refuse(state, method, "media groups cannot carry a keyboard"));
            }
            let kinds: Vec<String> = items.iter().map(|i| str_of(i, "type")).collect();
            if kinds.iter().any(|k| k == "document") && kinds.iter().any(|k| k != "document") {
                return Err(refuse(state, method, "documents can't be mixed with other media types"));
            }
            let mut media = Vec::new();
            let mut caption = (String::new(), String::new());
            for (index, item) in items.iter().enumerate() {
                let file_id = str_of(item, "media");
                check_file(state, method, &file_id, &str_of(item, "type"))?;
                let item_params = item.as_object().cloned().unwrap_or_default();
                let (html, plain) = parse_text(state, method, &item_params, "caption")?;
                if plain.encode_utf16().count() > MAX_CAPTION {
                    return Err(refuse(state, method, "message caption is too long"));
                }
                if index == 0 {
                    caption = (html, plain);
                }
                media.push((str_of(item, "type"), file_id));
            }
            (caption.0, caption.1, media)
        }
        _ => {
            let (key, kind) = match method {
                "sendPhoto" => ("photo", "photo"),
                "sendVideo" => ("video", "video"),
                "sendAnimation" => ("animation", "animation"),
                _ => ("document", "document"),
            };
            // An upload comes as the file part itself, or (teloxide) as `attach://<part name>`.
            let attached = as_str(params.get(key))
                .and_then(|v| v.strip_prefix("attach://").map(str::to_string))
                .and_then(|part| params.get(&part));
            let file_id = match attached.or(params.get(key)) {
                Some(upload) if upload.get("upload").is_some() => take_upload(state, method, upload, kind)?,
                other => {
                    let file_id = as_str(other).unwrap_or_default();
                    check_file(state, method, &file_id, kind)?;
                    file_id
                }
            };
            let (html, plain) = parse_text(state, method, params, "caption")?;
            let length = plain.encode_utf16().count();
            if length > MAX_CAPTION {
                return Err(refuse(state, method, &format!("message caption is too long ({length} UTF-16 units)")));
            }
            (html, plain, vec![(kind.to_string(), file_id)])
        }
    };
    check_rate(state, chat, if method == "sendMediaGroup" { media.len() } else { 1 })?;
    let after_update = state.last_update_in_chat.get(&chat).copied().unwrap_or(0);
    let count = if method == "sendMediaGroup" { media.len() } else { 1 };
    let mut sent = Vec::new();
    for index in 0..count {
        let message_id = next_message_id(state, chat);
        let chat_json = if chat == CHANNEL_ID { channel_chat_json() } else { private_chat_json(chat, &state.users) };
        let mut json = json!({ "message_id": message_id, "date": state.date, "chat": chat_json });
        if chat != CHANNEL_ID {
            json["from"] = bot_user_json();
        }
        let item_media: Vec<(String, String)> =
            if method == "sendMediaGroup" { vec![media[index].clone()] } else { media.clone() };
        match item_media.first() {
            None => json["text"] = json!(plain),
            Some((kind, file_id)) => {
                for (key, value) in media_fields(kind, file_id).as_object().into_iter().flatten() {
                    json[key] = value.clone();
                }
                if index == 0 && !plain.is_empty() {
                    json["caption"] = json!(plain);
                }
            }
        }
        if method == "sendMediaGroup" {
            json["media_group_id"] = json!(format!("out{chat}{}", message_id - index as i64));
        }
        if let Some(markup) = &markup {
            json["reply_markup"] = markup.clone();
        }
        state.messages.insert(
            (chat, message_id),
            Stored {
                chat_id: chat,
                message_id,
                date: state.date,
                from_bot: true,
                html: html.clone(),
                plain: plain.clone(),
                media: item_media,
                markup: markup.clone(),
                json: json.clone(),
            },
        );
        sent.push(json);
    }
    let index = state.outputs.len();
    state.outputs_by_chat.entry(chat).or_default().push(index);
    let silent = params.get("disable_notification").is_some_and(|v| v == &json!(true) || v == &json!("true"));
    state.outputs.push(Output {
        chat_id: chat,
        message_id: sent.first().and_then(|m| m["message_id"].as_i64()).unwrap_or(0),
        edited: false,
        html,
        plain,
        media,
        markup,
        at: Instant::now(),
        after_update,
        silent,
        link_preview: params.get("link_preview_options").cloned(),
        message_ids: sent.iter().filter_map(|m| m["message_id"].as_i64()).collect(),
    });
    Ok(if method == "sendMediaGroup" { Value::Array(sent) } else { sent.remove(0) })
}

fn edit_text(state: &mut State, params: &Map<String, Value>) -> Result<Value, Reply> {
    let method = "editMessageText";
    let chat = chat_of(state, params)?;
    let id = params.get("message_id").and_then(as_i64).unwrap_or(0);
    let markup = check_markup(state, method, params.get("reply_markup"))?;
    let (html, plain) = parse_text(state, method, params, "text")?;
    let length = plain.encode_utf16().count();
    if plain.trim().is_empty() {
        return Err(refuse(state, method, "message text is empty"));
    }
    if length > MAX_TEXT {
        return Err(refuse(state, method, "MESSAGE_TOO_LONG"));
    }
    let Some(stored) = state.messages.get(&(chat, id)).cloned() else {
        return Err(bad("message to edit not found"));
    };
    if !stored.from_bot {
        return Err(refuse(state, method, "message can't be edited"));
    }
    if !stored.media.is_empty() {
        return Err(refuse(state, method, "there is no text in the message to edit"));
    }
    if stored.plain == plain && stored.html == html && stored.markup == markup {
        return Err(bad(
            "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        ));
    }
    let mut json = stored.json.clone();
    json["text"] = json!(plain);
    json["edit_date"] = json!(state.date);
    match &markup {
        Some(markup) => json["reply_markup"] = markup.clone(),
        None => {
            if let Some(object) = json.as_object_mut() {
                object.remove("reply_markup");
            }
        }
    }
    let preview = params.get("link_preview_options").cloned();
    record_edit(state, Stored { html, plain, markup, json: json.clone(), ..stored }, preview);
    Ok(json)
}

/// Stores an edited message and records the edit as an output.
fn record_edit(state: &mut State, edited: Stored, link_preview: Option<Value>) {
    let (chat, id) = (edited.chat_id, edited.message_id);
    let after_update = state.last_update_in_chat.get(&chat).copied().unwrap_or(0);
    let index = state.outputs.len();
    state.outputs_by_chat.entry(chat).or_default().push(index);
    state.outputs.push(Output {
        chat_id: chat,
        message_id: id,
        edited: true,
        html: edited.html.clone(),
        plain: edited.plain.clone(),
        media: edited.media.clone(),
        markup: edited.markup.clone(),
        at: Instant::now(),
        after_update,
        silent: false,
        link_preview,
        message_ids: vec![id],
    });
    state.messages.insert((chat, id), edited);
}

fn edit_caption(state: &mut State, params: &Map<String, Value>) -> Result<Value, Reply> {
    let method = "editMessageCaption";
    let chat = chat_of(state, params)?;
    let id = params.get("message_id").and_then(as_i64).unwrap_or(0);
    let markup = check_markup(state, method, params.get("reply_markup"))?;
    let (html, plain) = parse_text(state, method, params, "caption")?;
    if plain.encode_utf16().count() > MAX_CAPTION {
        return Err(refuse(state, method, "message caption is too long"));
    }
    let Some(stored) = state.messages.get(&(chat, id)).cloned() else {
        return Err(bad("message to edit not found"));
    };
    if stored.media.is_empty() {
        return Err(refuse(state, method, "there is no caption in the message to edit"));
    }
    if stored.plain == plain && stored.html == html && stored.markup == markup {
        return Err(bad(
            "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        ));
    }
    let mut json = stored.json.clone();
    json["caption"] = json!(plain);
    json["edit_date"] = json!(state.date);
    record_edit(state, Stored { html, plain, markup, json: json.clone(), ..stored }, None);
    Ok(json)
}

/// Telegram's HTML parse mode, strictly: the allowed tags, properly nested; only `&lt;`,
/// `&gt;`, `&amp;`, `&quot;` and numeric entities; no bare `<` or `&`. Returns the plain text.
pub fn parse_html(html: &str) -> Result<String, String> {
    // Written out here on purpose, not taken from src/engine/html.rs: the fake checks the
    // product and must not share its assumptions.
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    ];
    let mut plain = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        let offset = html.len() - rest.len();
        match c {
            '<' => {
                let end = rest.find('>').ok_or_else(|| format!("Unclosed start tag at byte offset {offset}"))?;
                let inner = &rest[1..end];
                rest = &rest[end + 1..];
                if let Some(name) = inner.strip_prefix('/') {
                    let name = name.trim().to_ascii_lowercase();
                    match open.pop() {
                        Some(top) if top == name => {}
                        _ => return Err(format!("Unmatched end tag at byte offset {offset}, expected \"</{name}>\"")),
                    }
                    continue;
                }
                let name: String = inner
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect::<String>()
                    .to_ascii_lowercase();
                if name.is_empty() || !TAGS.contains(&name.as_str()) {
                    return Err(format!("Unsupported start tag \"{name}\" at byte offset {offset}"));
                }
                let attributes = &inner[name.len()..];
                if name == "a" && !attributes.contains("href=") {
                    return Err(format!("Can't find href attribute of the tag \"a\" at byte offset {offset}"));
                }
                if name == "span" && !attributes.contains("tg-spoiler") {
                    return Err(format!("Tag \"span\" must have class \"tg-spoiler\" at byte offset {offset}"));
                }
                if !attributes.matches('"').count().is_multiple_of(2) {
                    return Err(format!("Unclosed attribute value at byte offset {offset}"));
                }
                open.push(name);
            }
            '&' => {
                let end =
                    rest.char_indices().take(12).find(|(_, c)| *c == ';').map(|(i, _)| i).ok_or_else(|| {
                        format!("Character '&' is reserved and must be escaped at byte offset {offset}")
                    })?;
                let entity = &rest[1..end];
                let decoded = match entity {
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "amp" => Some('&'),
                    "quot" => Some('"'),
                    numeric => numeric.strip_prefix('#').and_then(|n| {
                        let code = match n.strip_prefix(['x', 'X']) {
                            Some(hex) => u32::from_str_radix(hex, 16).ok(),
                            None => n.parse().ok(),
                        };
                        code.and_then(char::from_u32)
                    }),
                };
                let decoded =
                    decoded.ok_or_else(|| format!("Unsupported HTML entity \"&{entity};\" at byte offset {offset}"))?;
                plain.push(decoded);
                rest = &rest[end + 1..];
            }
            _ => {
                plain.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if let Some(unclosed) = open.pop() {
        return Err(format!("Can't find end tag corresponding to start tag \"{unclosed}\""));
    }
    Ok(plain)
}
