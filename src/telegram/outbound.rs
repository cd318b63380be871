//! Engine effects → Bot API calls, with Telegram's failure modes handled: messages paced to
//! Telegram's rates, 429 `retry_after` honoured (every send pauses), 5xx and network errors
//! retried with backoff, "message is not modified" taken as success, "message to edit not found"
//! sent anew, "query is too old" ignored.

use std::sync::Arc;
use std::time::Duration;

use teloxide::RequestError;
use teloxide::payloads::setters::*;
use teloxide::prelude::*;
use teloxide::requests::Request;
use teloxide::types::{
    ChatAction, FileId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, InputMedia, InputMediaDocument,
    InputMediaPhoto, InputMediaVideo, KeyboardButton, KeyboardMarkup, LinkPreviewOptions, MessageId, ParseMode,
    ReplyMarkup,
};

use super::pace::{Pace, Priority};
use crate::config::bundle::MediaKind;
use crate::engine::event::{Effect, Keyboard, LinkPreview, Media, OutMessage};

/// The bot's line to Telegram: the client and the pacer every message goes through.
#[derive(Clone)]
pub struct Telegram {
    pub bot: Bot,
    pub pace: Arc<Pace>,
    /// Where report files are; a media file id `export:<name>` is uploaded from there.
    pub exports: std::path::PathBuf,
}

/// How many times a call is tried before the failure is reported (teloxide itself waits 10 s
/// after each 5xx, so this bounds a Telegram outage's hold on a chat to about a minute).
const ATTEMPTS: u32 = 5;
/// 429 answers waited out before a call is given up.
const MAX_RATE_LIMITED: u32 = 30;
/// A button answer is only worth a few tries: after 15 s Telegram refuses it anyway.
const ANSWER_ATTEMPTS: u32 = 3;

impl Telegram {
    /// A call that is not a message (edit, answer, chat action): retried, not paced.
    pub async fn call<R>(&self, request: R, what: &'static str) -> Result<teloxide::requests::Output<R>, RequestError>
    where
        R: Request<Err = RequestError>,
    {
        call_with(request, what, ATTEMPTS, Some((&self.pace, None))).await
    }

    /// A message to `chat_id`: paced to Telegram's rates, then retried like any call.
    pub async fn send_paced<R>(
        &self,
        chat_id: i64,
        priority: Priority,
        request: R,
        what: &'static str,
    ) -> Result<teloxide::requests::Output<R>, RequestError>
    where
        R: Request<Err = RequestError>,
    {
        call_with(request, what, ATTEMPTS, Some((&self.pace, Some(Slot { chat_id, priority, weight: 1 })))).await
    }
}

/// How a send is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// Every transient failure (a reply may then, rarely, arrive twice rather than be lost).
    Transient,
    /// Only failures after which Telegram surely did nothing (a 429, a refused connection): a
    /// channel post must never go out twice, so a timeout or a 5xx is reported, not retried.
    SurelyUnsent,
}

/// Whether Telegram surely did not carry the request out: it said so (429), or the request
/// never reached it (the connection could not be made).
pub fn surely_unsent(error: &RequestError) -> bool {
    match error {
        RequestError::RetryAfter(_) => true,
        RequestError::Network(error) => error.is_connect(),
        _ => false,
    }
}

/// Where a message goes and how much of the rate budget it takes.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub chat_id: i64,
    pub priority: Priority,
    /// Messages Telegram counts: the number of files for an album, else 1.
    pub weight: usize,
}

/// Sends one request, retrying what is worth retrying, `attempts` times at most. With a pacer,
/// a 429 pauses every send; with a chat too, each attempt first waits for the chat's turn.
pub async fn call_with<R>(
    request: R,
    what: &'static str,
    attempts: u32,
    pace: Option<(&Pace, Option<Slot>)>,
) -> Result<teloxide::requests::Output<R>, RequestError>
where
    R: Request<Err = RequestError>,
{
    call_retrying(request, what, attempts, pace, Retries::Transient).await
}

/// [`call_with`], retrying as `retries` says.
pub async fn call_retrying<R>(
    request: R,
    what: &'static str,
    attempts: u32,
    pace: Option<(&Pace, Option<Slot>)>,
    retries: Retries,
) -> Result<teloxide::requests::Output<R>, RequestError>
where
    R: Request<Err = RequestError>,
{
    let (mut attempt, mut rate_limited) = (0, 0);
    loop {
        match pace {
            Some((pace, Some(slot))) => pace.wait_turn_for(slot.chat_id, slot.priority, slot.weight).await,
            // Not a message, but a 429 pause holds every call.
            Some((pace, None)) => pace.wait_unfrozen().await,
            None => {}
        }
        let error = match request.send_ref().await {
            Ok(output) => return Ok(output),
            Err(error) => error,
        };
        let wait = match &error {
            // Telegram did nothing and says when to come back: always safe to retry, and not a
            // failed attempt (a storm of 429s must not lose the reply), up to a sane bound.
            RequestError::RetryAfter(seconds) => {
                rate_limited += 1;
                if rate_limited > MAX_RATE_LIMITED {
                    return Err(error);
                }
                if let Some((pace, _)) = pace {
                    pace.freeze(tokio::time::Instant::now() + seconds.duration());
                }
                seconds.duration()
            }
            transient if is_transient(transient) && (retries == Retries::Transient || surely_unsent(transient)) => {
                attempt += 1;
                if attempt >= attempts {
                    return Err(error);
                }
                backoff(attempt)
            }
            _ => return Err(error),
        };
        // Info, not warn: a retry that works is routine; a call that fails for good is logged
        // by the caller.
        tracing::info!(
            call = what,
            attempt,
            wait_ms = wait.as_millis() as u64,
            "Telegram call failed, retrying: {error}"
        );
        tokio::time::sleep(wait).await;
    }
}

/// Errors that may go away by themselves: network trouble and Telegram's own 5xx answers.
pub fn is_transient(error: &RequestError) -> bool {
    match error {
        RequestError::Network(_) | RequestError::Io(_) | RequestError::InvalidJson { .. } => true,
        RequestError::Api(teloxide::ApiError::Unknown(description)) => {
            let description = description.to_ascii_lowercase();
            ["internal server error", "bad gateway", "service unavailable", "gateway timeout", "timeout"]
                .iter()
                .any(|needle| description.contains(needle))
        }
        _ => false,
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 * 2u64.saturating_pow(attempt.saturating_sub(1))).min(Duration::from_secs(30))
}

/// The button press an event came from, answered at most once.
#[derive(Debug)]
pub struct Press {
    pub query_id: String,
    pub answered: bool,
    /// When the press arrived: Telegram accepts an answer for about 15 s.
    pub arrived: tokio::time::Instant,
}

/// Answers later than this after the press are not attempted (Telegram refuses them at ~15 s).
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(14);

impl Press {
    pub fn new(query_id: String) -> Self {
        Press { query_id, answered: false, arrived: tokio::time::Instant::now() }
    }
}

/// Answers a button press (once), with an optional toast. A query Telegram no longer knows
/// ("query is too old") is not an error: the press simply gets no toast.
pub async fn answer(tg: &Telegram, press: &mut Press, text: Option<&str>) {
    if press.answered {
        return;
    }
    press.answered = true;
    let mut request = tg.bot.answer_callback_query(teloxide::types::CallbackQueryId(press.query_id.clone()));
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        request = request.text(text.to_string());
    }
    // Not held by another chat's 429 pause, and given up at the deadline.
    let answered = call_with(request, "answerCallbackQuery", ANSWER_ATTEMPTS, None);
    match tokio::time::timeout_at(press.arrived + ANSWER_DEADLINE, answered).await {
        Ok(Ok(_) | Err(RequestError::Api(teloxide::ApiError::InvalidQueryId))) => {}
        Ok(Err(error)) => tracing::warn!("could not answer a button press: {error}"),
        Err(_) => tracing::warn!("a button press could not be answered in time"),
    }
}

/// Shows "typing…" in a chat (Telegram shows it for about five seconds).
pub async fn typing(tg: &Telegram, chat_id: i64) {
    let request = tg.bot.send_chat_action(ChatId(chat_id), ChatAction::Typing);
    if let Err(error) = call_with(request, "sendChatAction", 1, Some((&tg.pace, None))).await {
        tracing::debug!(chat_id, "could not show typing: {error}");
    }
}

/// Carries out the visible effects of one event, in order. Returns the first call that failed
/// for good (the rest are still tried).
pub async fn deliver(
    tg: &Telegram,
    chat_id: i64,
    effects: Vec<Effect>,
    press: Option<&mut Press>,
) -> Result<(), RequestError> {
    deliver_as(tg, chat_id, effects, press, Priority::Reply).await
}

/// [`deliver`], its first message sent with `priority` (a model's result follows the "⏳" that
/// already answered the admin: it is a follow-up).
pub async fn deliver_as(
    tg: &Telegram,
    chat_id: i64,
    effects: Vec<Effect>,
    press: Option<&mut Press>,
    first: Priority,
) -> Result<(), RequestError> {
    let mut press = press;
    let mut first_failure = None;
    let mut priority = first;
    for effect in effects {
        let result = match effect {
            Effect::Answer { text } => {
                if let Some(press) = press.as_deref_mut() {
                    answer(tg, press, text.as_deref()).await;
                }
                Ok(())
            }
            Effect::Send { message } => {
                let sent = send(tg, chat_id, priority, &message).await;
                priority = Priority::FollowUp;
                sent
            }
            Effect::Edit { message_id, message } => edit(tg, chat_id, message_id, &message).await,
            Effect::Delete { message_id } => {
                let request = tg.bot.delete_message(ChatId(chat_id), message_id_of(message_id));
                if let Err(error) = tg.call(request, "deleteMessage").await {
                    tracing::debug!(chat_id, message_id, "could not delete a message: {error}");
                }
                Ok(())
            }
            Effect::End | Effect::RunAction { .. } | Effect::Warn { .. } => Ok(()),
        };
        if let Err(error) = result {
            tracing::error!(chat_id, "a reply could not be delivered: {error}");
            first_failure.get_or_insert(error);
        }
    }
    // A press must be answered even when the engine had nothing to say about it.
    if let Some(press) = press {
        answer(tg, press, None).await;
    }
    first_failure.map_or(Ok(()), Err)
}

fn message_id_of(id: i64) -> MessageId {
    MessageId(i32::try_from(id).unwrap_or(i32::MAX))
}

async fn edit(tg: &Telegram, chat_id: i64, message_id: i64, message: &OutMessage) -> Result<(), RequestError> {
    let mut request = tg.bot.edit_message_text(ChatId(chat_id), message_id_of(message_id), &message.text);
    request = request.parse_mode(ParseMode::Html);
    if let Some(ReplyMarkup::InlineKeyboard(markup)) = markup(&message.keyboard) {
        request = request.reply_markup(markup);
    }
    match tg.call(request, "editMessageText").await {
        Ok(_) | Err(RequestError::Api(teloxide::ApiError::MessageNotModified)) => Ok(()),
        Err(RequestError::Api(
            teloxide::ApiError::MessageToEditNotFound
            | teloxide::ApiError::MessageCantBeEdited
            | teloxide::ApiError::MessageIdInvalid,
        )) => {
            tracing::debug!(chat_id, message_id, "the message to edit is gone; sending it anew");
            send(tg, chat_id, Priority::Reply, message).await
        }
        // A photo or video message has a caption, not a text: show the new screen as a message.
        Err(RequestError::Api(teloxide::ApiError::Unknown(description)))
            if description.contains("no text in the message to edit") =>
        {
            tracing::debug!(chat_id, message_id, "the message to edit is gone; sending it anew");
            send(tg, chat_id, Priority::Reply, message).await
        }
        Err(error) => Err(error),
    }
}

/// Sends a message: text, one media file with its caption, or an album.
pub async fn send(tg: &Telegram, chat_id: i64, priority: Priority, message: &OutMessage) -> Result<(), RequestError> {
    send_with(tg, chat_id, priority, message, false, Retries::Transient).await.map(drop)
}

/// Sends a message (see [`send`]), without a notification sound when `silent`, and returns
/// the ids of the messages Telegram made (one per file of an album).
pub async fn send_with(
    tg: &Telegram,
    chat_id: i64,
    priority: Priority,
    message: &OutMessage,
    silent: bool,
    retries: Retries,
) -> Result<Vec<i64>, RequestError> {
    let bot = &tg.bot;
    let slot = |weight| Some((&*tg.pace, Some(Slot { chat_id, priority, weight })));
    let chat = ChatId(chat_id);
    let reply_markup = markup(&message.keyboard);
    let caption = (!message.text.is_empty()).then(|| message.text.clone());
    let Some(media) = &message.media else {
        let mut request = bot.send_message(chat, &message.text).parse_mode(ParseMode::Html);
        if let Some(reply_markup) = reply_markup {
            request = request.reply_markup(reply_markup);
        }
        if let Some(options) = link_preview(&message.preview) {
            request = request.link_preview_options(options);
        }
        if silent {
            request = request.disable_notification(true);
        }
        let sent = call_retrying(request, "sendMessage", ATTEMPTS, slot(1), retries).await?;
        return Ok(vec![i64::from(sent.id.0)]);
    };
    if media.is_album() {
        let mut request = bot.send_media_group(chat, album(media, caption));
        if silent {
            request = request.disable_notification(true);
        }
        let sent = call_retrying(request, "sendMediaGroup", ATTEMPTS, slot(media.files().count()), retries).await?;
        return Ok(sent.iter().map(|m| i64::from(m.id.0)).collect());
    }
    let file = input_file(tg, &media.file_id);
    macro_rules! send_file {
        ($method:ident, $name:literal) => {{
            let mut request = bot.$method(chat, file).parse_mode(ParseMode::Html);
            if let Some(caption) = caption {
                request = request.caption(caption);
            }
            if let Some(reply_markup) = reply_markup {
                request = request.reply_markup(reply_markup);
            }
            if silent {
                request = request.disable_notification(true);
            }
            let sent = call_retrying(request, $name, ATTEMPTS, slot(1), retries).await?;
            Ok(vec![i64::from(sent.id.0)])
        }};
    }
    match media.kind {
        MediaKind::Photo => send_file!(send_photo, "sendPhoto"),
        MediaKind::Video => send_file!(send_video, "sendVideo"),
        MediaKind::Animation => send_file!(send_animation, "sendAnimation"),
        MediaKind::Document => send_file!(send_document, "sendDocument"),
    }
}

/// The engine's link preview choice as Telegram's options (`None`: Telegram's default).
fn link_preview(preview: &LinkPreview) -> Option<LinkPreviewOptions> {
    let off = LinkPreviewOptions {
        is_disabled: false,
        url: None,
        prefer_small_media: false,
        prefer_large_media: false,
        show_above_text: false,
    };
    match preview {
        LinkPreview::Default => None,
        LinkPreview::Off => Some(LinkPreviewOptions { is_disabled: true, ..off }),
        LinkPreview::Above { url } => {
            Some(LinkPreviewOptions { url: Some(url.clone()), prefer_large_media: true, show_above_text: true, ..off })
        }
    }
}

/// A file to send: a report file from the exports folder (`export:<name>`, uploaded), or a
/// Telegram file id. Only plain names inside the folder are read.
fn input_file(tg: &Telegram, file_id: &str) -> InputFile {
    if let Some(name) = file_id.strip_prefix(crate::store::EXPORT_PREFIX) {
        let plain = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']);
        if plain {
            return InputFile::file(tg.exports.join(name)).file_name(name.to_string());
        }
        tracing::warn!(file_id, "a report file name that is not a plain name was not read");
    }
    InputFile::file_id(FileId(file_id.to_string()))
}

fn album(media: &Media, caption: Option<String>) -> Vec<InputMedia> {
    let mut caption = caption;
    media
        .files()
        .map(|(kind, file_id)| {
            let file = InputFile::file_id(FileId(file_id.to_string()));
            let caption = caption.take();
            match kind {
                MediaKind::Video => {
                    let mut item = InputMediaVideo::new(file).parse_mode(ParseMode::Html);
                    item.caption = caption;
                    InputMedia::Video(item)
                }
                MediaKind::Document => {
                    let mut item = InputMediaDocument::new(file).parse_mode(ParseMode::Html);
                    item.caption = caption;
                    InputMedia::Document(item)
                }
                MediaKind::Photo | MediaKind::Animation => {
                    let mut item = InputMediaPhoto::new(file).parse_mode(ParseMode::Html);
                    item.caption = caption;
                    InputMedia::Photo(item)
                }
            }
        })
        .collect()
}

/// The engine's keyboard as Telegram reply markup.
pub fn markup(keyboard: &Keyboard) -> Option<ReplyMarkup> {
    match keyboard {
        Keyboard::None => None,
        Keyboard::Inline(rows) => {
            Some(ReplyMarkup::InlineKeyboard(InlineKeyboardMarkup::new(rows.iter().map(|row| {
                row.iter()
                    .map(|button| InlineKeyboardButton::callback(button.label.to_string(), button.data.to_string()))
            }))))
        }
        Keyboard::Links(rows) => Some(ReplyMarkup::InlineKeyboard(InlineKeyboardMarkup::new(rows.iter().map(|row| {
            row.iter().filter_map(|button| {
                // Addresses were checked when the button was made; one that no longer parses
                // is left out rather than failing the whole message.
                let url = url::Url::parse(&button.url).ok()?;
                Some(InlineKeyboardButton::url(button.label.clone(), url))
            })
        })))),
        Keyboard::Reply(rows) => Some(ReplyMarkup::Keyboard(
            KeyboardMarkup::new(rows.iter().map(|row| row.iter().map(|label| KeyboardButton::new(label.clone()))))
                .resize_keyboard()
                .persistent(),
        )),
    }
}
