//! Model answers → text Telegram always accepts: Markdown (what models write) becomes Telegram's
//! HTML subset, stray HTML is cleaned, a leading "Here is your post:" line is dropped, emoji and
//! every other character are kept, and the result is measured as Telegram measures it.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

use crate::engine::html;

/// A model answer made sendable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sendable {
    /// Telegram HTML, valid for Telegram's parser.
    pub html: String,
    /// Its length as Telegram counts it (UTF-16 units after entity parsing).
    pub length: usize,
}

impl Sendable {
    /// Whether it fits a limit (4096 for a message, 1024 for a caption, or a format's own).
    pub fn fits(&self, limit: usize) -> bool {
        self.length <= limit
    }
}

/// Converts a model answer into Telegram HTML.
pub fn sendable(answer: &str) -> Sendable {
    let html = html::sanitize(&markdown_to_html(drop_preamble(answer.trim())));
    let length = html::sanitized_utf16_len(&html);
    Sendable { html, length }
}

/// Cuts Telegram HTML to at most `limit` units at the best break (paragraph, line, sentence,
/// word), closing open tags and adding "…" when something was cut: the offline stand-in for
/// shortening, always valid and within the limit.
pub fn cut_to(html_text: &str, limit: usize) -> Sendable {
    let whole = sendable_html(html_text);
    if whole.fits(limit) {
        return whole;
    }
    // Room for the text before "…"; a character wider than the room (an emoji is two units)
    // can make the first piece too long, so the room shrinks until the cut fits.
    let mut room = limit.saturating_sub(1).max(1);
    loop {
        let first = html::split_for_telegram(&whole.html, room).into_iter().next().unwrap_or_default();
        let cut = sendable_html(&format!("{}…", first.trim_end()));
        if cut.fits(limit) {
            return cut;
        }
        if room == 1 {
            break;
        }
        room = room.saturating_sub((cut.length - limit).max(1)).max(1);
    }
    // Not even one character fits before the ellipsis.
    let ellipsis = sendable_html("…");
    if ellipsis.fits(limit) { ellipsis } else { sendable_html("") }
}

/// Measures Telegram HTML that is already clean (after sanitizing it once more).
pub fn sendable_html(html_text: &str) -> Sendable {
    let html = html::sanitize(html_text);
    let length = html::sanitized_utf16_len(&html);
    Sendable { html, length }
}

/// Drops a short first line that only introduces the post ("Here is your post:", "Sure! Here
/// it is:", in any language): one line under 120 characters ending with a colon (`:` or the
/// Armenian U+055D), followed by a blank line and more text. Nothing else is ever dropped.
fn drop_preamble(answer: &str) -> &str {
    let Some((first, rest)) = answer.split_once('\n') else { return answer };
    let first = first.trim();
    let introduces = first.chars().count() < 120
        && (first.ends_with(':') || first.ends_with('\u{55D}'))
        && !first.starts_with(['#', '*', '-', '>', '`', '|']);
    let blank_after = rest.starts_with('\n') || rest.trim_start_matches([' ', '\t']).starts_with('\n');
    if introduces && blank_after && !rest.trim().is_empty() { rest.trim_start() } else { answer }
}

/// Markdown to Telegram HTML (before sanitizing): bold, italic, strike, code, code blocks,
/// links, block quotes; headings become bold lines; list items keep a bullet or number; tables,
/// images and footnotes become their text. Raw HTML in the answer is passed on for the
/// sanitizer to keep (allowed tags) or escape.
fn markdown_to_html(markdown: &str) -> String {
    let options = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES;
    let mut out = String::with_capacity(markdown.len() + markdown.len() / 4);
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut links: Vec<bool> = Vec::new();
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph | Tag::TableHead | Tag::TableRow | Tag::HtmlBlock => {}
                Tag::Heading { .. } | Tag::Strong => out.push_str("<b>"),
                Tag::Emphasis => out.push_str("<i>"),
                Tag::Strikethrough => out.push_str("<s>"),
                Tag::BlockQuote(_) => out.push_str("<blockquote>"),
                Tag::CodeBlock(kind) => match kind {
                    CodeBlockKind::Fenced(language) if !language.is_empty() => {
                        out.push_str("<pre><code class=\"language-");
                        escape_into(&mut out, language.split_whitespace().next().unwrap_or_default());
                        out.push_str("\">");
                    }
                    _ => out.push_str("<pre>"),
                },
                Tag::List(start) => {
                    end_line(&mut out);
                    lists.push(start);
                }
                Tag::Item => {
                    let depth = lists.len().saturating_sub(1);
                    out.push_str(&"  ".repeat(depth));
                    match lists.last_mut() {
                        Some(Some(number)) => {
                            out.push_str(&format!("{number}. "));
                            *number += 1;
                        }
                        _ => out.push_str("• "),
                    }
                }
                Tag::Link { dest_url, .. } => {
                    let linkable = ["http://", "https://", "tg://"].iter().any(|s| dest_url.starts_with(s));
                    if linkable {
                        out.push_str("<a href=\"");
                        escape_into(&mut out, &dest_url);
                        out.push_str("\">");
                    }
                    links.push(linkable);
                }
                Tag::TableCell => out.push(' '),
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Paragraph => out.push_str("\n\n"),
                TagEnd::Heading(_) => out.push_str("</b>\n\n"),
                TagEnd::Strong => out.push_str("</b>"),
                TagEnd::Emphasis => out.push_str("</i>"),
                TagEnd::Strikethrough => out.push_str("</s>"),
                TagEnd::BlockQuote(_) => {
                    trim_end_newlines(&mut out);
                    out.push_str("</blockquote>\n\n");
                }
                TagEnd::CodeBlock => {
                    trim_end_newlines(&mut out);
                    close_code_block(&mut out);
                }
                TagEnd::List(_) => {
                    lists.pop();
                    if lists.is_empty() {
                        out.push('\n');
                    }
                }
                TagEnd::Item => end_line(&mut out),
                TagEnd::Link => out.push_str(if links.pop() == Some(true) { "</a>" } else { "" }),
                TagEnd::TableRow | TagEnd::TableHead => out.push('\n'),
                _ => {}
            },
            Event::Text(text) => escape_into(&mut out, &text),
            Event::Code(code) => {
                out.push_str("<code>");
                escape_into(&mut out, &code);
                out.push_str("</code>");
            }
            Event::Html(raw) | Event::InlineHtml(raw) => out.push_str(&raw),
            Event::SoftBreak | Event::HardBreak => out.push('\n'),
            Event::Rule => end_line(&mut out),
            Event::TaskListMarker(done) => out.push_str(if done { "☑ " } else { "☐ " }),
            Event::FootnoteReference(label) => escape_into(&mut out, &label),
            Event::InlineMath(text) | Event::DisplayMath(text) => escape_into(&mut out, &text),
        }
    }
    out.trim_end().to_string()
}

/// Closes a code block opened as `<pre>` or `<pre><code …>`.
fn close_code_block(out: &mut String) {
    let opened_code = out.rfind("<pre>").is_some_and(|at| out[at..].starts_with("<pre><code"));
    out.push_str(if opened_code { "</code></pre>\n\n" } else { "</pre>\n\n" });
}

fn end_line(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

fn trim_end_newlines(out: &mut String) {
    while out.ends_with('\n') {
        out.pop();
    }
}

fn escape_into(out: &mut String, text: &str) {
    for ch in text.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_telegram_html() {
        let answer = "## Title\n\n**Bold** and *italic* and ~~old~~ and `code`, see [shop](https://t.me/time_2_shopping).\n\n- one\n- two\n\n> quoted";
        assert_eq!(
            sendable(answer).html,
            "<b>Title</b>\n\n<b>Bold</b> and <i>italic</i> and <s>old</s> and <code>code</code>, see <a href=\"https://t.me/time_2_shopping\">shop</a>.\n\n• one\n• two\n\n<blockquote>quoted</blockquote>"
        );
    }

    #[test]
    fn a_preamble_line_is_dropped_and_nothing_else() {
        assert_eq!(sendable("Here is your post:\n\n🔥 Sale!").html, "🔥 Sale!");
        assert_eq!(sendable("Sale today:\n- shoes").html, "Sale today:\n\n• shoes", "no blank line: part of the post");
        assert_eq!(sendable("Only this:").html, "Only this:", "nothing after it: kept");
    }

    #[test]
    fn stray_html_and_special_characters_are_made_safe() {
        let sent = sendable("Price < 5000 & <u>new</u> <script>x</script> 😀");
        assert_eq!(sent.html, "Price &lt; 5000 &amp; <u>new</u> &lt;script&gt;x&lt;/script&gt; 😀");
        assert_eq!(sent.length, "Price < 5000 & new <script>x</script> 😀".encode_utf16().count());
    }

    #[test]
    fn links_only_to_the_web_or_telegram() {
        assert_eq!(sendable("[x](javascript:alert(1))").html, "x");
    }

    #[test]
    fn a_cut_fits_even_when_one_character_is_wider_than_the_limit() {
        assert_eq!(cut_to("🡐🡐", 2).html, "…");
        assert_eq!(cut_to("🡐", 1).html, "…");
        assert_eq!(cut_to("abc", 0).length, 0);
        let cut = cut_to("<b>The first sentence.</b> The second one is a good deal longer.", 30);
        assert!(cut.fits(30) && cut.html.starts_with("<b>The first") && cut.html.ends_with('…'), "{cut:?}");
    }

    #[test]
    fn fenced_code_keeps_its_language() {
        assert_eq!(
            sendable("```rust\nfn main() {}\n```").html,
            "<pre><code class=\"language-rust\">fn main() {}</code></pre>"
        );
    }
}
