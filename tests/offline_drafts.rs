//! The offline generator: every shipped format gives a deterministic draft of valid Telegram HTML
//! within the format's target length, with the keywords, details, a call to action and hashtags.

use std::path::Path;

use postflow::actions::CATALOGUE;
use postflow::ai::offline_draft;
use postflow::config;
use postflow::engine::html;

#[test]
fn every_format_drafts_within_its_length() {
    let loaded = config::load(Path::new(env!("CARGO_MANIFEST_DIR")), CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle = loaded.result.unwrap_or_else(|d| panic!("{}", config::render_diagnostics(&d, &loaded.sources)));
    let inputs = [
        ("կաշվե պայուսակ, նոր հավաքածու, 20% զեղչ", Some("Գինը՝ 25000 ֏, առաքումն անվճար է Երևանում")),
        ("բրդյա սվիտեր", None),
        ("ձմեռային կոշիկներ, սանդալներ, ակնոցներ, գլխարկներ", Some("Միայն այս շաբաթ")),
    ];
    let mut problems = Vec::new();
    for format in &bundle.formats {
        for (keywords, details) in inputs {
            let draft = offline_draft(&bundle, &format.id, keywords, details).unwrap();
            let again = offline_draft(&bundle, &format.id, keywords, details).unwrap();
            assert_eq!(draft.text, again.text, "deterministic");
            assert_eq!(html::sanitize(&draft.text), draft.text, "valid Telegram HTML");
            let plain = html::to_plain_text(&draft.text, false);
            if !(format.min_words as usize..=format.max_words as usize).contains(&draft.words) {
                problems.push(format!(
                    "{} with {keywords:?}/{details:?}: {} words, target {}–{}",
                    format.id, draft.words, format.min_words, format.max_words
                ));
            }
            let first = keywords.split(',').next().unwrap().trim();
            assert!(plain.contains(first), "{}: keyword {first:?} missing\n{plain}", format.id);
            if let Some(details) = details {
                assert!(plain.contains(details), "{}: details missing", format.id);
            }
            assert!(format.cta.iter().any(|cta| plain.contains(cta.as_str())), "{}: no call to action", format.id);
            assert!(format.hashtags.iter().all(|tag| plain.contains(tag.as_str())), "{}: hashtags", format.id);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn keywords_cannot_inject_html() {
    let loaded = config::load(Path::new(env!("CARGO_MANIFEST_DIR")), CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle = loaded.result.unwrap_or_else(|d| panic!("{}", config::render_diagnostics(&d, &loaded.sources)));
    let draft = offline_draft(&bundle, "selling", "<script>x</script>, a & b", Some("<b>bold")).unwrap();
    assert!(draft.text.contains("&lt;script&gt;"));
    assert!(!draft.text.contains("<script>"));
    assert_eq!(html::sanitize(&draft.text), draft.text);
}
