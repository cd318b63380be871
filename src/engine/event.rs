//! What comes into the engine (events) and what it asks the adapters to do (effects).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::codec::CallbackData;
pub use super::post_view::LinkButton;
use crate::config::bundle::MediaKind;

/// Something that happened in a chat, with the time it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub chat_id: i64,
    pub user_id: i64,
    /// Unix seconds; the engine has no clock of its own.
    pub now: i64,
    pub kind: EventKind,
}

/// The kinds of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    Text {
        text: String,
    },
    Command {
        name: String,
        args: String,
    },
    Media {
        media: Media,
    },
    /// An inline button press; `message_id` is the message that carried the button.
    Button {
        data: String,
        message_id: Option<i64>,
    },
    ActionResult {
        request_id: u64,
        outcome: ActionOutcome,
    },
    Timer {
        name: String,
    },
    /// The adapter (re)started and the chat is back: show the current step again.
    Resume,
    /// The bot has something to tell (see [`Notice`](super::session::Notice)).
    Notice {
        notice: super::session::Notice,
    },
}

/// The result of an action the engine asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ActionOutcome {
    Ok {
        value: serde_json::Value,
    },
    /// `code` is an [`ActionErrorCode`](crate::config::bundle::ActionErrorCode) code; the menu
    /// words it for the admin. `detail` is for the logs.
    Failed {
        code: String,
        detail: String,
    },
}

/// A media file, referenced by Telegram's `file_id` (or a local path in the console), or an
/// album: the first file here and the others in `more`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    pub kind: MediaKind,
    pub file_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// The album's other files, in order; empty for a single file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<MediaFile>,
}

/// One more file of an album.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaFile {
    pub kind: MediaKind,
    pub file_id: String,
}

impl Media {
    /// One file without a caption.
    pub fn single(kind: MediaKind, file_id: impl Into<String>) -> Self {
        Media { kind, file_id: file_id.into(), caption: None, more: Vec::new() }
    }

    /// The kinds of every file, the first one first.
    pub fn kinds(&self) -> impl Iterator<Item = MediaKind> + '_ {
        std::iter::once(self.kind).chain(self.more.iter().map(|file| file.kind))
    }

    /// Every file as (kind, file id), the first one first.
    pub fn files(&self) -> impl Iterator<Item = (MediaKind, &str)> + '_ {
        std::iter::once((self.kind, self.file_id.as_str()))
            .chain(self.more.iter().map(|f| (f.kind, f.file_id.as_str())))
    }

    pub fn is_album(&self) -> bool {
        !self.more.is_empty()
    }
}

/// An inline button as it is sent: a label and engine-generated callback data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineButton {
    /// Borrowed for the widgets' fixed labels (days, hours), so a calendar allocates little.
    pub label: Cow<'static, str>,
    pub data: CallbackData,
}

/// The keyboard attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(tag = "type", content = "rows", rename_all = "snake_case")]
pub enum Keyboard {
    #[default]
    None,
    Inline(Vec<Vec<InlineButton>>),
    /// The main menu as a Telegram reply keyboard.
    Reply(Vec<Vec<String>>),
    /// Buttons that open addresses (a channel post's calls to action).
    Links(Vec<Vec<LinkButton>>),
}

impl Keyboard {
    /// Every label on the keyboard, row by row.
    pub fn labels(&self) -> Vec<&str> {
        match self {
            Keyboard::None => Vec::new(),
            Keyboard::Inline(rows) => rows.iter().flatten().map(|b| b.label.as_ref()).collect(),
            Keyboard::Reply(rows) => rows.iter().flatten().map(String::as_str).collect(),
            Keyboard::Links(rows) => rows.iter().flatten().map(|b| b.label.as_str()).collect(),
        }
    }
}

/// A message to show: Telegram HTML text, optional media and a keyboard.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct OutMessage {
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    pub keyboard: Keyboard,
    #[serde(skip_serializing_if = "LinkPreview::is_default")]
    pub preview: LinkPreview,
}

/// What Telegram shows for the links in a text message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LinkPreview {
    /// Telegram's own choice: a preview of the first link.
    #[default]
    Default,
    Off,
    /// The page at `url`, large, above the text.
    Above {
        url: String,
    },
}

impl LinkPreview {
    pub fn is_default(&self) -> bool {
        *self == LinkPreview::Default
    }
}

/// What the engine asks the outside world to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    Send {
        message: OutMessage,
    },
    Edit {
        message_id: i64,
        message: OutMessage,
    },
    Delete {
        message_id: i64,
    },
    /// Answer the button press of this event (Telegram requires it), with an optional toast.
    Answer {
        text: Option<String>,
    },
    RunAction {
        request_id: u64,
        name: String,
        args: serde_json::Value,
    },
    /// The conversation ended; the session is idle.
    End,
    /// Something went wrong in the configuration at run time; the adapter logs it.
    Warn {
        message: String,
    },
}
