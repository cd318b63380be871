//! Whatever a model answers, the text postflow sends is valid Telegram HTML and its measured
//! length is Telegram's: checked against the fake Bot API's own strict parser, which shares no
//! code with the product's converter.

mod common;

use common::fake_telegram::parse_html;
use postflow::ai::output::sendable;
use proptest::prelude::*;

const PIECES: &[&str] = &[
    "**",
    "*",
    "_",
    "__",
    "~~",
    "`",
    "```",
    "```rust\n",
    "\n",
    "\n\n",
    "# ",
    "### ",
    "> ",
    "- ",
    "* ",
    "1. ",
    "[",
    "](",
    ")",
    "https://t.me/time_2_shopping",
    "javascript:x",
    "<b>",
    "</b>",
    "<i>",
    "</i>",
    "<u>",
    "</u>",
    "<s>",
    "<a href=\"https://x.am\">",
    "<a>",
    "</a>",
    "<script>",
    "</script>",
    "<p>",
    "</p>",
    "<br>",
    "&",
    "&amp;",
    "&lt;",
    "&#",
    "&#1329;",
    "&nbsp;",
    ";",
    "<",
    ">",
    "\"",
    "Ահա ձեր գրառումը՝",
    "Here is your post:",
    ":",
    "😀",
    "🇦🇲",
    "👍🏽",
    "կոշիկ",
    "Նոր հավաքածու",
    " ",
    "|",
    "||",
    "<tg-spoiler>",
    "</tg-spoiler>",
    "<blockquote>",
    "</blockquote>",
    "<pre>",
    "</pre>",
    "<code>",
    "</code>",
    "<span class=\"tg-spoiler\">",
    "</span>",
    "---",
    "| a | b |\n|---|---|\n",
    "![img](https://x.am/a.png)",
    "[^1]",
    "- [ ] ",
    "\t",
    "\u{200d}",
    "\u{0}",
];

fn answer() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(PIECES).prop_map(str::to_string),
            1 => any::<String>(),
        ],
        0..40,
    )
    .prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_answer_becomes_valid_telegram_html_measured_as_telegram_does(text in answer()) {
        let sent = sendable(&text);
        let plain = parse_html(&sent.html).map_err(|e| TestCaseError::fail(format!("{e}\nhtml: {}", sent.html)))?;
        prop_assert_eq!(sent.length, plain.encode_utf16().count(), "html: {}", sent.html);
    }
}

#[test]
fn emoji_armenian_and_flags_survive_untouched() {
    let answer = "🔥 **Նոր հավաքածու** 🇦🇲 👍🏽 — 20% զեղչ։";
    let sent = sendable(answer);
    assert_eq!(sent.html, "🔥 <b>Նոր հավաքածու</b> 🇦🇲 👍🏽 — 20% զեղչ։");
    assert!(sent.fits(1024));
}

#[test]
fn an_armenian_preamble_is_dropped() {
    assert_eq!(sendable("Ահա ձեր գրառումը՝\n\n😍 Նոր կոշիկներ").html, "😍 Նոր կոշիկներ");
}
