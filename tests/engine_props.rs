//! Property test: random event sequences through the shipped flows never panic, always leave a
//! valid session, and every effect respects Telegram's limits.

use std::path::Path;

use postflow::actions::CATALOGUE;
use postflow::config::{self, Bundle};
use postflow::engine::codec::MAX_CALLBACK_BYTES;
use postflow::engine::event::{ActionOutcome, Effect, Event, EventKind, Keyboard, Media};
use postflow::engine::session::{Session, Wait};
use postflow::engine::{html, step};
use proptest::prelude::*;

fn bundle() -> Bundle {
    let loaded = config::load(Path::new(env!("CARGO_MANIFEST_DIR")), CATALOGUE, chrono_tz::Asia::Yerevan);
    match loaded.result {
        Ok(bundle) => bundle,
        Err(d) => panic!("{}", config::render_diagnostics(&d, &loaded.sources)),
    }
}

/// What the simulated admin does next; indexes pick from whatever is on screen.
#[derive(Debug, Clone)]
enum Move {
    Text(String),
    MenuLabel(usize),
    Command(&'static str),
    PressLatest(usize),
    PressOld(usize),
    Garbage(String),
    Photo,
    Album,
    Document,
    WaitSeconds(i64),
    Resume,
}

fn moves() -> impl Strategy<Value = Move> {
    prop_oneof![
        4 => prop_oneof![
            Just("կոշիկ, զեղչ".to_string()),
            Just("ok".to_string()),
            Just("<b>bold & <i>".to_string()),
            Just("30.11.2026".to_string()),
            Just("18:45".to_string()),
            Just("25:99".to_string()),
            Just("".to_string()),
            ".{0,40}",
        ].prop_map(Move::Text),
        2 => (0usize..6).prop_map(Move::MenuLabel),
        1 => prop_oneof![Just("start"), Just("new"), Just("cancel"), Just("help"), Just("menu"), Just("nope")].prop_map(Move::Command),
        8 => (0usize..64).prop_map(Move::PressLatest),
        1 => (0usize..64).prop_map(Move::PressOld),
        1 => "[a-z0-9.]{0,70}".prop_map(Move::Garbage),
        1 => Just(Move::Photo),
        1 => Just(Move::Album),
        1 => Just(Move::Document),
        1 => (0i64..200_000).prop_map(Move::WaitSeconds),
        1 => Just(Move::Resume),
    ]
}

/// Canned action results shaped like the real ones.
fn respond(name: &str, fail: bool) -> ActionOutcome {
    if fail {
        return ActionOutcome::Failed { code: "store_failed".into(), detail: "the server is down".into() };
    }
    let value = match name {
        "ai.generate" => {
            serde_json::json!({ "text": "<b>Վերնագիր</b>\nՏեքստ & <i>մանրամասներ</i>", "offline": true, "words": 4 })
        }
        "posts.list" => {
            serde_json::json!([{ "id": 1, "title": "Առաջին", "format": "selling", "status": "draft", "desired_time": "2026-12-01T10:00" }])
        }
        "post.get" => {
            serde_json::json!({ "id": 1, "status": "draft", "format": "selling", "text": "<b>x</b>", "created_by": 1, "created_at": 0, "updated_at": 0 })
        }
        _ => serde_json::json!({ "id": 1, "status": "draft" }),
    };
    ActionOutcome::Ok { value }
}

fn check_effects(effects: &[Effect]) -> Result<(), TestCaseError> {
    for effect in effects {
        let message = match effect {
            Effect::Send { message } | Effect::Edit { message, .. } => message,
            _ => continue,
        };
        prop_assert!(!message.text.trim().is_empty() || message.media.is_some(), "empty message");
        prop_assert_eq!(html::sanitize(&message.text), message.text.clone(), "text is not clean Telegram HTML");
        if let Keyboard::Inline(rows) = &message.keyboard {
            prop_assert!(rows.iter().all(|r| !r.is_empty() && r.len() <= 8), "row width");
            prop_assert!(rows.iter().map(Vec::len).sum::<usize>() <= 100, "too many buttons");
            for button in rows.iter().flatten() {
                prop_assert!(!button.data.is_empty() && button.data.len() <= MAX_CALLBACK_BYTES);
                prop_assert!(!button.label.is_empty());
            }
        }
    }
    Ok(())
}

fn check_session(bundle: &Bundle, session: &Session) -> Result<(), TestCaseError> {
    for frame in &session.stack {
        prop_assert!(bundle.step(&frame.flow, &frame.step).is_some(), "frame {:?} does not exist", frame);
    }
    match &session.wait {
        Wait::User => {
            let frame = session.current();
            prop_assert!(frame.is_some(), "waits for the user with no flow");
            let step = frame.and_then(|f| bundle.step(&f.flow, &f.step));
            prop_assert!(step.is_some_and(|s| s.waits_for_user()), "waits on a step that asks nothing");
        }
        Wait::Action { request_id } => {
            prop_assert!(session.pending.as_ref().is_some_and(|p| p.request_id == *request_id));
        }
        Wait::Nothing => prop_assert!(session.stack.is_empty(), "a running flow that waits for nothing"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_conversations_stay_valid(script in prop::collection::vec((moves(), any::<bool>()), 1..60)) {
        let bundle = bundle();
        let menu: Vec<String> = bundle.menu.reply_keyboard.iter().flatten().map(|b| b.label.clone()).collect();
        let mut session = Session::new(5, 5);
        let mut now = 1_795_672_800;
        let mut keyboards: Vec<(i64, Vec<String>)> = Vec::new();
        let mut next_id = 0;
        for (mv, fail) in script {
            let kind = match mv {
                Move::Text(text) => EventKind::Text { text },
                Move::MenuLabel(i) => EventKind::Text { text: menu[i % menu.len()].clone() },
                Move::Command(name) => EventKind::Command { name: name.into(), args: String::new() },
                Move::PressLatest(i) | Move::PressOld(i) if keyboards.is_empty() => EventKind::Text { text: i.to_string() },
                Move::PressLatest(i) => {
                    let (id, data) = keyboards.last().cloned().unwrap_or_default();
                    EventKind::Button { data: data[i % data.len()].clone(), message_id: Some(id) }
                }
                Move::PressOld(i) => {
                    let (id, data) = keyboards[i % keyboards.len()].clone();
                    EventKind::Button { data: data[i % data.len()].clone(), message_id: Some(id) }
                }
                Move::Garbage(data) => EventKind::Button { data, message_id: None },
                Move::Photo => EventKind::Media { media: Media::single(postflow::config::bundle::MediaKind::Photo, "AgAD") },
                Move::Document => EventKind::Media { media: Media::single(postflow::config::bundle::MediaKind::Document, "BQAD") },
                Move::Album => {
                    let mut media = Media::single(postflow::config::bundle::MediaKind::Photo, "AgAD");
                    media.more = vec![postflow::engine::event::MediaFile { kind: postflow::config::bundle::MediaKind::Video, file_id: "BAAD".into() }];
                    EventKind::Media { media }
                }
                Move::WaitSeconds(s) => { now += s; continue; }
                Move::Resume => EventKind::Resume,
            };
            let mut queue = vec![Event { chat_id: 5, user_id: 5, now, kind }];
            while let Some(event) = queue.pop() {
                let (next, effects) = step(&bundle, &session, &event);
                check_effects(&effects)?;
                for effect in &effects {
                    match effect {
                        Effect::Send { message } => {
                            next_id += 1;
                            if let Keyboard::Inline(rows) = &message.keyboard {
                                keyboards.push((next_id, rows.iter().flatten().map(|b| b.data.to_string()).collect()));
                            }
                        }
                        Effect::Edit { message_id, message } => {
                            if let Keyboard::Inline(rows) = &message.keyboard {
                                keyboards.push((*message_id, rows.iter().flatten().map(|b| b.data.to_string()).collect()));
                            }
                        }
                        Effect::RunAction { request_id, name, .. } => queue.push(Event {
                            chat_id: 5, user_id: 5, now,
                            kind: EventKind::ActionResult { request_id: *request_id, outcome: respond(name, fail) },
                        }),
                        _ => {}
                    }
                }
                session = next;
                check_session(&bundle, &session)?;
            }
        }
    }
}
