//! Whatever a model answers, the text postflow sends is valid Telegram HTML and its measured
//! length is Telegram's: checked against the fake Bot API's own strict parser, which shares no
//! code with the product's converter.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::fake_telegram::parse_html;
use postflow::ai::Ai;
use postflow::ai::llm::{ChatAnswer, ChatRequest, Llm, LlmFuture};
use postflow::ai::output::{cut_to, sendable};
use proptest::prelude::*;

/// A model that always gives the same answer (whatever it is asked: a draft, or to shorten it).
struct Stubborn(String);

impl Llm for Stubborn {
    fn describe(&self) -> String {
        "a model that always says the same".into()
    }
    fn model(&self) -> &str {
        "stubborn"
    }
    fn is_offline(&self) -> bool {
        false
    }
    fn chat<'a>(&'a self, _request: &'a ChatRequest) -> LlmFuture<'a> {
        let answer =
            ChatAnswer { text: self.0.clone(), model: "stubborn".into(), prompt_tokens: 1, completion_tokens: 1 };
        Box::pin(std::future::ready(Ok(answer)))
    }
}

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

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// The offline "shorten" (and the last resort anywhere): whatever the text and the limit,
    /// the cut is valid HTML within the limit.
    #[test]
    fn a_cut_is_valid_html_within_any_limit(text in answer(), limit in 1usize..1200) {
        let cut = cut_to(&sendable(&text).html, limit);
        let plain = parse_html(&cut.html).map_err(|e| TestCaseError::fail(format!("{e}\nhtml: {}", cut.html)))?;
        prop_assert_eq!(cut.length, plain.encode_utf16().count());
        prop_assert!(cut.length <= limit, "{} > {limit}: {}", cut.length, cut.html);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Through the whole `ai.generate` action: whatever the model says (even when asked to
    /// shorten), the draft is valid HTML, and it is either within the limit or marked as not
    /// fitting so the flow asks the admin — never an over-long text passed on as fine.
    #[test]
    fn any_model_answer_gives_a_valid_draft_that_fits_or_says_it_does_not(
        text in answer(),
        repeat in 1usize..60,
        limit in prop::sample::select(vec![200usize, 1024, 4096]),
    ) {
        let bundle = bundle();
        let ai = Ai::new(Arc::new(Stubborn(text.repeat(repeat))));
        let args = serde_json::json!({ "format": "selling", "keywords": "կոշիկ", "limit": limit });
        let done = ai.run_blocking(&bundle, "ai.generate", &args);
        match done.result {
            Ok(value) => {
                let html = value["text"].as_str().unwrap();
                let plain = parse_html(html).map_err(|e| TestCaseError::fail(format!("{e}\nhtml: {html}")))?;
                let length = plain.encode_utf16().count();
                prop_assert_eq!(value["length"].as_u64(), Some(length as u64));
                prop_assert_eq!(value["fits"].as_bool(), Some(length <= limit));
            }
            // Nothing sendable was left (only markup, or blanks): an error, never an empty post.
            Err(error) => prop_assert_eq!(error.code.code(), "ai_empty"),
        }
    }
}

fn bundle() -> Arc<postflow::config::Bundle> {
    static BUNDLE: std::sync::OnceLock<Arc<postflow::config::Bundle>> = std::sync::OnceLock::new();
    BUNDLE.get_or_init(|| common::bot::load_bundle(Path::new(env!("CARGO_MANIFEST_DIR")))).clone()
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
