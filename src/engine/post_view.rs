//! A post as subscribers see it: the one function that turns a post into Telegram messages,
//! used for the admin's preview and by the publisher, so what is approved is what is sent.

use serde::{Deserialize, Serialize};

use super::event::{Keyboard, LinkPreview, Media, OutMessage};
use super::html;

/// Telegram's limits, in UTF-16 units after entity parsing.
pub const MAX_TEXT: usize = 4096;
pub const MAX_CAPTION: usize = 1024;
/// The longest label Telegram shows on a button without cutting it (it accepts more, but a
/// channel post's button should read whole).
pub const MAX_BUTTON_LABEL: usize = 64;

/// A call-to-action button under a channel post: a label and the address it opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkButton {
    pub label: String,
    pub url: String,
}

/// How a post with media and text is laid out when the text is too long for a caption (the
/// admin chooses at preview time; publishing never meets a length problem).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The text is the media's caption (it must fit 1024).
    #[default]
    Caption,
    /// The media, then the text as its own message.
    Separate,
    /// One text message with the page at `link_url` as a large preview above the text (the
    /// media itself is not sent).
    LinkPreview,
}

/// How a post is published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostOptions {
    /// Subscribers get the post without a sound.
    pub silent: bool,
    /// The post is pinned in the channel.
    pub pin: bool,
    /// Telegram shows a preview of the first link in a text post (off unless asked for).
    pub link_preview: bool,
    pub layout: Layout,
    /// The page shown as a large preview in the `link_preview` layout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_url: Option<String>,
}

/// What a post shows: the fields of a stored post that reach the channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostContent {
    /// Telegram HTML.
    pub text: String,
    pub media: Option<Media>,
    pub buttons: Vec<LinkButton>,
    pub options: PostOptions,
}

/// The messages a post becomes in the channel, in order. Never fails and never produces a
/// message Telegram would refuse for its length: a caption that does not fit makes the text a
/// message of its own; a text over 4096 is split at paragraph boundaries with the buttons on the
/// last part; an album (which cannot carry buttons) is followed by `album_buttons_text` with the
/// buttons when the text went as its caption.
pub fn channel_messages(post: &PostContent, album_buttons_text: &str) -> Vec<OutMessage> {
    let text = html::sanitize(&post.text);
    let length = html::sanitized_utf16_len(&text);
    let blank = length < 64 && html::to_plain_text(&text, false).trim().is_empty();
    let buttons = link_keyboard(&post.buttons);
    let preview = match (&post.options.layout, &post.options.link_url) {
        (Layout::LinkPreview, Some(url)) => LinkPreview::Above { url: url.clone() },
        _ if post.options.link_preview => LinkPreview::Default,
        _ => LinkPreview::Off,
    };
    let mut messages = Vec::new();
    let layout = match (&post.media, post.options.layout) {
        (None, _) => Layout::Separate,
        (Some(_), Layout::LinkPreview) if post.options.link_url.is_some() => Layout::LinkPreview,
        (Some(_), Layout::Caption) if !blank && length > MAX_CAPTION => Layout::Separate,
        (Some(_), Layout::LinkPreview) => Layout::Separate,
        (Some(_), layout) => layout,
    };
    match (&post.media, layout) {
        (Some(media), Layout::Caption) => {
            let caption = if blank { String::new() } else { text.clone() };
            if media.is_album() {
                messages.push(OutMessage { text: caption, media: Some(media.clone()), ..OutMessage::default() });
                if buttons != Keyboard::None {
                    messages.push(OutMessage {
                        text: html::sanitize(album_buttons_text),
                        keyboard: buttons,
                        preview: LinkPreview::Off,
                        ..OutMessage::default()
                    });
                }
            } else {
                messages.push(OutMessage {
                    text: caption,
                    media: Some(media.clone()),
                    keyboard: buttons,
                    ..OutMessage::default()
                });
            }
            return messages;
        }
        (Some(media), Layout::Separate) => {
            if blank {
                let keyboard = if media.is_album() { Keyboard::None } else { buttons.clone() };
                messages.push(OutMessage {
                    media: Some(media.clone()),
                    keyboard: keyboard.clone(),
                    ..OutMessage::default()
                });
                if media.is_album() && buttons != Keyboard::None {
                    messages.push(OutMessage {
                        text: html::sanitize(album_buttons_text),
                        keyboard: buttons,
                        preview: LinkPreview::Off,
                        ..OutMessage::default()
                    });
                }
                return messages;
            }
            messages.push(OutMessage { media: Some(media.clone()), ..OutMessage::default() });
        }
        _ => {}
    }
    let text = if blank { "…".to_string() } else { text };
    let chunks = if length <= MAX_TEXT { vec![text] } else { html::split_for_telegram(&text, MAX_TEXT) };
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.into_iter().enumerate() {
        let keyboard = if i == last { buttons.clone() } else { Keyboard::None };
        let preview = if i == 0 { preview.clone() } else { LinkPreview::Off };
        messages.push(OutMessage { text: chunk, media: None, keyboard, preview });
    }
    messages
}

/// One button per row, as channels usually show calls to action.
fn link_keyboard(buttons: &[LinkButton]) -> Keyboard {
    if buttons.is_empty() {
        return Keyboard::None;
    }
    Keyboard::Links(buttons.iter().map(|b| vec![b.clone()]).collect())
}

/// Why a button an admin typed cannot go under a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ButtonProblem {
    EmptyLabel,
    LongLabel,
    BadUrl,
}

impl ButtonProblem {
    /// The refusal key the menu words for the admin.
    pub fn key(&self) -> &'static str {
        match self {
            ButtonProblem::EmptyLabel => "button_label_empty",
            ButtonProblem::LongLabel => "button_label_long",
            ButtonProblem::BadUrl => "button_url_invalid",
        }
    }
}

/// Reads a button typed as `label - https://…` (or `label | url`, or `label https://…`):
/// the label is plain text, the address an absolute http(s) or t.me link.
pub fn parse_link_button(typed: &str) -> Result<LinkButton, ButtonProblem> {
    let typed = typed.trim();
    let split = typed.rfind(char::is_whitespace).map(|i| (typed[..i].trim(), typed[i..].trim()));
    let (label, url) = match split {
        Some((label, url)) => (label.trim_end_matches(['-', '|', '—', '–', ':']).trim(), url),
        None => ("", typed),
    };
    let url = check_url(url).ok_or(ButtonProblem::BadUrl)?;
    if label.is_empty() {
        return Err(ButtonProblem::EmptyLabel);
    }
    if label.chars().count() > MAX_BUTTON_LABEL {
        return Err(ButtonProblem::LongLabel);
    }
    Ok(LinkButton { label: label.to_string(), url })
}

/// An address Telegram accepts on a url button and a subscriber can safely open: absolute
/// http or https with a host, no spaces, no credentials; a bare `t.me/...` gets `https://`.
pub fn check_url(url: &str) -> Option<String> {
    let url = url.trim();
    let url = if url.starts_with("t.me/") { format!("https://{url}") } else { url.to_string() };
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_ok = !host.is_empty()
        && !host.contains('@')
        && host.contains('.')
        && host.split(':').next().is_some_and(|h| !h.is_empty() && !h.starts_with('.') && !h.ends_with('.'));
    let clean = url.len() <= 2048 && !url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<');
    // What is sent must parse as Telegram (and the client) will parse it.
    let parses = url::Url::parse(&url).is_ok_and(|parsed| parsed.host_str().is_some());
    (host_ok && clean && parses).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::bundle::MediaKind;
    use crate::engine::event::MediaFile;

    fn photo() -> Media {
        Media::single(MediaKind::Photo, "p1")
    }

    fn album() -> Media {
        Media {
            kind: MediaKind::Photo,
            file_id: "p1".into(),
            caption: None,
            more: vec![MediaFile { kind: MediaKind::Photo, file_id: "p2".into() }],
        }
    }

    fn button() -> LinkButton {
        LinkButton { label: "Buy".into(), url: "https://shop.example/a".into() }
    }

    fn post(text: &str, media: Option<Media>, layout: Layout) -> PostContent {
        PostContent {
            text: text.into(),
            media,
            buttons: vec![button()],
            options: PostOptions { layout, ..PostOptions::default() },
        }
    }

    #[test]
    fn a_short_caption_goes_under_the_photo_with_the_buttons() {
        let messages = channel_messages(&post("<b>Sale</b>", Some(photo()), Layout::Caption), "v");
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].text, "<b>Sale</b>");
        assert!(matches!(messages[0].keyboard, Keyboard::Links(_)));
    }

    #[test]
    fn a_long_caption_never_reaches_telegram_as_a_caption() {
        let long = "a".repeat(MAX_CAPTION + 1);
        for layout in [Layout::Caption, Layout::Separate, Layout::LinkPreview] {
            let messages = channel_messages(&post(&long, Some(photo()), layout), "v");
            assert_eq!(messages.len(), 2, "{layout:?}");
            assert!(messages[0].text.is_empty() && messages[0].media.is_some());
            assert_eq!(messages[1].text, long);
            assert!(matches!(messages[1].keyboard, Keyboard::Links(_)));
        }
    }

    #[test]
    fn an_album_puts_its_buttons_on_a_follow_up() {
        let messages = channel_messages(&post("Sale", Some(album()), Layout::Caption), "v");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].text, "Sale");
        assert_eq!(messages[0].keyboard, Keyboard::None);
        assert_eq!(messages[1].text, "v");
        let separate = channel_messages(&post("Sale", Some(album()), Layout::Separate), "v");
        assert_eq!(separate.len(), 2);
        assert!(separate[0].text.is_empty());
        assert_eq!(separate[1].text, "Sale", "the text itself carries the buttons");
    }

    #[test]
    fn the_link_preview_layout_is_one_text_message_with_the_page_above() {
        let mut content = post(&"b".repeat(2000), Some(photo()), Layout::LinkPreview);
        content.options.link_url = Some("https://shop.example/item".into());
        let messages = channel_messages(&content, "v");
        assert_eq!(messages.len(), 1);
        assert!(messages[0].media.is_none());
        assert_eq!(messages[0].preview, LinkPreview::Above { url: "https://shop.example/item".into() });
    }

    #[test]
    fn a_text_over_4096_is_split_with_the_buttons_last() {
        let text = format!("{}\n\n{}", "a".repeat(3000), "b".repeat(3000));
        let messages = channel_messages(&post(&text, None, Layout::Caption), "v");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].keyboard, Keyboard::None);
        assert!(matches!(messages[1].keyboard, Keyboard::Links(_)));
    }

    #[test]
    fn typed_buttons_are_read_and_bad_addresses_refused() {
        assert_eq!(
            parse_link_button("Buy now - https://shop.example/x?y=1"),
            Ok(LinkButton { label: "Buy now".into(), url: "https://shop.example/x?y=1".into() })
        );
        assert_eq!(parse_link_button("Write to us t.me/shop").map(|b| b.url), Ok("https://t.me/shop".into()));
        assert_eq!(parse_link_button("https://shop.example"), Err(ButtonProblem::EmptyLabel));
        for bad in [
            "Buy javascript:alert(1)",
            "Buy http://",
            "Buy ftp://x.y",
            "Buy https://user@evil.example",
            "Buy",
            "Buy https://a.b:99999",
        ] {
            assert_eq!(parse_link_button(bad), Err(ButtonProblem::BadUrl), "{bad}");
        }
        assert_eq!(parse_link_button(&format!("{} https://a.example", "x".repeat(65))), Err(ButtonProblem::LongLabel));
    }
}
