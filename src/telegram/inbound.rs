//! Telegram updates → what the adapter does with them: an engine event, a part of an album, a
//! button press, or nothing (groups, channels, edits, kinds no flow can use).

use teloxide::types::{Message, Update, UpdateKind};

use crate::config::bundle::MediaKind;
use crate::engine::event::{EventKind, Media, MediaFile};

/// Who sent an update, as the users table records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub id: i64,
    pub username: Option<String>,
    pub name: String,
}

/// An update from a private chat, ready for the gate and the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct FromChat {
    pub chat_id: i64,
    pub sender: Sender,
    pub incoming: Incoming,
}

/// What arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Text, a command or one media file: an engine event as it is.
    Event(EventKind),
    /// One file of an album; the adapter collects the group into one event.
    AlbumPart { group: String, file: MediaFile, caption: Option<String> },
    /// A button press (`data` as Telegram delivered it; the engine decodes it).
    Press { query_id: String, data: String, message_id: i64 },
    /// A message no flow can use (sticker, voice, location...), perhaps one of an album.
    Unsupported { album: Option<String> },
}

/// The adapter's reading of one update.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Chat(FromChat),
    /// Not for the engine; the reason is for the debug log. A press still gets its answer.
    Ignore {
        reason: &'static str,
        press: Option<String>,
    },
}

fn ignore(reason: &'static str) -> Inbound {
    Inbound::Ignore { reason, press: None }
}

/// Reads an update. `bot_username` lets `/cmd@thisbot` through and drops `/cmd@otherbot`.
pub fn read(update: &Update, bot_username: &str) -> Inbound {
    match &update.kind {
        UpdateKind::Message(message) => read_message(message, bot_username),
        UpdateKind::CallbackQuery(query) => {
            let ignored = |reason| Inbound::Ignore { reason, press: Some(query.id.0.clone()) };
            let Some(message) = &query.message else {
                return ignored("a press on an inline-mode message");
            };
            if !message.chat().is_private() {
                return ignored("a press outside a private chat");
            }
            Inbound::Chat(FromChat {
                chat_id: message.chat().id.0,
                sender: sender(&query.from),
                incoming: Incoming::Press {
                    query_id: query.id.0.clone(),
                    data: query.data.clone().unwrap_or_default(),
                    message_id: i64::from(message.id().0),
                },
            })
        }
        UpdateKind::EditedMessage(_) => ignore("an edited message"),
        UpdateKind::ChannelPost(_) | UpdateKind::EditedChannelPost(_) => ignore("a channel post"),
        _ => ignore("an update kind no flow asks for"),
    }
}

fn read_message(message: &Message, bot_username: &str) -> Inbound {
    if !message.chat.is_private() {
        return ignore("a message outside a private chat");
    }
    let Some(from) = &message.from else {
        return ignore("a message without a sender");
    };
    if from.is_bot {
        return ignore("a message from a bot");
    }
    let incoming = match incoming(message, bot_username) {
        Some(incoming) => incoming,
        None => return ignore("a command for another bot"),
    };
    Inbound::Chat(FromChat { chat_id: message.chat.id.0, sender: sender(from), incoming })
}

/// `None` for a command addressed to another bot.
fn incoming(message: &Message, bot_username: &str) -> Option<Incoming> {
    if let Some(text) = message.text() {
        // A command is what Telegram marks as one (a bot_command entity at the start), so a
        // typed "/r/rust news" stays text.
        let marked = message.entities().is_some_and(|entities| {
            entities.iter().any(|e| e.offset == 0 && e.kind == teloxide::types::MessageEntityKind::BotCommand)
        });
        if let Some(command) = text.strip_prefix('/').filter(|_| marked) {
            let (head, args) = command.split_once(char::is_whitespace).unwrap_or((command, ""));
            let name = match head.split_once('@') {
                Some((name, to)) if to.eq_ignore_ascii_case(bot_username) => name,
                Some(_) => return None,
                None => head,
            };
            return Some(Incoming::Event(EventKind::Command { name: name.to_string(), args: args.trim().to_string() }));
        }
        return Some(Incoming::Event(EventKind::Text { text: text.to_string() }));
    }
    let group = message.media_group_id().map(|group| group.0.clone());
    let file = if let Some(animation) = message.animation() {
        MediaFile { kind: MediaKind::Animation, file_id: animation.file.id.0.clone() }
    } else if let Some(sizes) = message.photo() {
        // Telegram lists the sizes smallest first; keep the largest.
        let Some(largest) = sizes.iter().max_by_key(|size| size.width * size.height) else {
            return Some(Incoming::Unsupported { album: group });
        };
        MediaFile { kind: MediaKind::Photo, file_id: largest.file.id.0.clone() }
    } else if let Some(video) = message.video() {
        MediaFile { kind: MediaKind::Video, file_id: video.file.id.0.clone() }
    } else if let Some(document) = message.document() {
        MediaFile { kind: MediaKind::Document, file_id: document.file.id.0.clone() }
    } else {
        return Some(Incoming::Unsupported { album: group });
    };
    let caption = message.caption().map(str::to_string);
    if let Some(group) = group {
        return Some(Incoming::AlbumPart { group, file, caption });
    }
    let media = Media { kind: file.kind, file_id: file.file_id, caption, more: Vec::new() };
    Some(Incoming::Event(EventKind::Media { media }))
}

fn sender(user: &teloxide::types::User) -> Sender {
    Sender { id: user.id.0 as i64, username: user.username.clone(), name: user.full_name() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsed from text, as teloxide parses Telegram's answers.
    fn update(json: serde_json::Value) -> Update {
        serde_json::from_str(&json.to_string()).unwrap()
    }

    fn private_message(extra: serde_json::Value) -> Update {
        let mut message = serde_json::json!({
            "message_id": 5, "date": 1_795_672_800,
            "chat": { "id": 42, "type": "private", "first_name": "Ani" },
            "from": { "id": 42, "is_bot": false, "first_name": "Ani", "username": "ani" },
        });
        for (key, value) in extra.as_object().unwrap() {
            message[key] = value.clone();
        }
        update(serde_json::json!({ "update_id": 1, "message": message }))
    }

    #[test]
    fn commands_addressed_to_this_bot_or_to_nobody_are_commands() {
        let read_text = |text: &str| {
            let length = text.split_whitespace().next().map_or(0, |w| w.encode_utf16().count());
            let entities = if text.starts_with('/') {
                serde_json::json!([{ "type": "bot_command", "offset": 0, "length": length }])
            } else {
                serde_json::json!([])
            };
            read(&private_message(serde_json::json!({ "text": text, "entities": entities })), "shop_bot")
        };
        let command = |name: &str, args: &str| {
            Incoming::Event(EventKind::Command { name: name.to_string(), args: args.to_string() })
        };
        let incoming = |inbound: Inbound| match inbound {
            Inbound::Chat(chat) => Some(chat.incoming),
            Inbound::Ignore { .. } => None,
        };
        assert_eq!(incoming(read_text("/start")), Some(command("start", "")));
        assert_eq!(incoming(read_text("/start@Shop_Bot go")), Some(command("start", "go")));
        assert_eq!(incoming(read_text("/start@other_bot")), None);
        assert_eq!(incoming(read_text("barev")), Some(Incoming::Event(EventKind::Text { text: "barev".into() })));
        // A slash Telegram did not mark as a command is text.
        let unmarked = read(&private_message(serde_json::json!({ "text": "/r/rust news" })), "shop_bot");
        assert_eq!(incoming(unmarked), Some(Incoming::Event(EventKind::Text { text: "/r/rust news".into() })));
    }

    #[test]
    fn the_largest_photo_size_is_kept_and_albums_are_marked() {
        let sizes = serde_json::json!([
            { "file_id": "small", "file_unique_id": "s", "width": 90, "height": 90 },
            { "file_id": "large", "file_unique_id": "l", "width": 1280, "height": 1280 },
        ]);
        let Inbound::Chat(single) = read(&private_message(serde_json::json!({ "photo": sizes })), "b") else {
            panic!("a photo is for the engine")
        };
        let Incoming::Event(EventKind::Media { media }) = single.incoming else { panic!("one photo is one event") };
        assert_eq!((media.kind, media.file_id.as_str()), (MediaKind::Photo, "large"));
        let album = private_message(serde_json::json!({ "photo": sizes, "media_group_id": "g1" }));
        let Inbound::Chat(part) = read(&album, "b") else { panic!("an album part is for the engine") };
        assert!(matches!(part.incoming, Incoming::AlbumPart { ref group, .. } if group == "g1"));
    }

    #[test]
    fn groups_edits_and_channel_posts_are_ignored() {
        let group = update(serde_json::json!({ "update_id": 2, "message": {
            "message_id": 1, "date": 0, "chat": { "id": -5, "type": "group", "title": "g" },
            "from": { "id": 42, "is_bot": false, "first_name": "A" }, "text": "/start" } }));
        assert!(matches!(read(&group, "b"), Inbound::Ignore { .. }));
        let edited = update(serde_json::json!({ "update_id": 3, "edited_message": {
            "message_id": 1, "date": 0, "edit_date": 1, "chat": { "id": 42, "type": "private", "first_name": "A" },
            "from": { "id": 42, "is_bot": false, "first_name": "A" }, "text": "x" } }));
        assert!(matches!(read(&edited, "b"), Inbound::Ignore { .. }));
        let sticker = private_message(serde_json::json!({ "sticker": {
            "file_id": "st", "file_unique_id": "u", "type": "regular", "width": 512, "height": 512,
            "is_animated": false, "is_video": false } }));
        assert!(matches!(read(&sticker, "b"), Inbound::Chat(FromChat { incoming: Incoming::Unsupported { .. }, .. })));
    }
}
