//! Engine rules checked on small purpose-made configurations: forged presses on hidden buttons,
//! time-picker limits, the loop guard, Telegram's length limits, sub-flows called from buttons,
//! steps whose buttons are all hidden, and sessions that outlive a configuration change.

use std::path::Path;

use postflow::actions::CATALOGUE;
use postflow::config::{self, Bundle};
use postflow::engine::codec::{Press, encode};
use postflow::engine::event::{ActionOutcome, Effect, Event, EventKind, Keyboard};
use postflow::engine::session::{Session, Wait};
use postflow::engine::{html, step};

const NOW: i64 = 1_795_672_800; // 2026-11-26T10:00:00+04:00

/// Builds a configuration from the minimal example's menu, format and prompt plus `flows`.
fn bundle(flows: &[(&str, &str)]) -> Bundle {
    bundle_with_menu(|menu| menu, flows)
}

fn bundle_with_menu(edit_menu: impl Fn(String) -> String, flows: &[(&str, &str)]) -> Bundle {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minimal");
    for sub in ["flows", "formats", "prompts/offline", "prompts/ai"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let menu = std::fs::read_to_string(root.join("flows/menu.yaml")).unwrap();
    let menu = menu.replace("flow: order", "flow: t").replace("flow: catalog", "flow: t");
    std::fs::write(dir.path().join("flows/menu.yaml"), edit_menu(menu.replace("start_flow: order", "start_flow: t")))
        .unwrap();
    std::fs::copy(root.join("formats/basic.yaml"), dir.path().join("formats/basic.yaml")).unwrap();
    for prompt in ["offline/basic.j2", "ai/basic.j2", "ai/basic_system.j2"] {
        std::fs::copy(root.join("prompts").join(prompt), dir.path().join("prompts").join(prompt)).unwrap();
    }
    for (name, text) in flows {
        std::fs::write(dir.path().join(format!("flows/{name}.yaml")), text).unwrap();
    }
    let loaded = config::load(dir.path(), CATALOGUE, chrono_tz::Asia::Yerevan);
    loaded.result.unwrap_or_else(|d| panic!("{}", config::render_diagnostics(&d, &loaded.sources)))
}

fn event(kind: EventKind) -> Event {
    Event { chat_id: 7, user_id: 7, now: NOW, kind }
}

fn run(bundle: &Bundle, session: &Session, kind: EventKind) -> (Session, Vec<Effect>) {
    step(bundle, session, &event(kind))
}

fn start(bundle: &Bundle) -> (Session, Vec<Effect>) {
    run(bundle, &Session::new(7, 7), EventKind::Command { name: "start".into(), args: String::new() })
}

fn press(bundle: &Bundle, session: &Session, press: Press) -> (Session, Vec<Effect>) {
    run(bundle, session, EventKind::Button { data: encode(session.nonce, press).to_string(), message_id: Some(1) })
}

fn texts(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { message } | Effect::Edit { message, .. } => Some(html::to_plain_text(&message.text, false)),
            _ => None,
        })
        .collect()
}

/// The keyboard of each sent message, labels joined with `|`.
fn keyboards(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { message } => Some(message.keyboard.labels().join("|")),
            _ => None,
        })
        .collect()
}

fn answer(effects: &[Effect]) -> Option<String> {
    effects.iter().find_map(|e| match e {
        Effect::Answer { text } => text.clone(),
        _ => None,
    })
}

fn at(session: &Session) -> String {
    session.current().map(|f| format!("{}/{}", f.flow, f.step)).unwrap_or_else(|| "idle".into())
}

#[test]
fn a_forged_press_on_a_hidden_button_is_refused() {
    let b = bundle(&[(
        "t",
        r#"
kind: flow
id: t
slots: { admin: { type: bool, default: false } }
steps:
  ask:
    say: "Ընտրեք"
    buttons:
      - { label: "Ջնջել", goto: delete, if: "admin" }
      - { label: "Հետ", end: true }
  delete:
    say: "ջնջված"
    end: true
"#,
    )]);
    let (session, effects) = start(&b);
    let labels = keyboards(&effects);
    assert_eq!(labels, vec!["Հետ"]);
    // The right nonce, the hidden button's index: still refused.
    let (after, effects) = press(&b, &session, Press::Button(0));
    assert_eq!(at(&after), "t/ask");
    assert!(answer(&effects).is_some_and(|a| a.contains("արդիական չէ")));
    assert!(!texts(&effects).iter().any(|t| t.contains("ջնջված")));
}

#[test]
fn the_time_picker_refuses_hours_and_minutes_outside_its_grid() {
    let b = bundle(&[(
        "t",
        r#"
kind: flow
id: t
slots: { at: time }
steps:
  ask:
    say: "Ժամը՝"
    input: { type: time, save_as: at, hours: [10, 20], minute_step: 15 }
    next: done
  done:
    say: "{{ at }}"
    end: true
"#,
    )]);
    let (session, _) = start(&b);
    for typed in ["03:00", "10:07", "21:15"] {
        let (after, effects) = run(&b, &session, EventKind::Text { text: typed.into() });
        assert_eq!(at(&after), "t/ask", "{typed} was accepted");
        assert!(texts(&effects)[0].contains("Չհաջողվեց կարդալ ժամը"), "{typed}");
    }
    let (after, effects) = press(&b, &session, Press::Hour(3));
    assert_eq!(after.view.hour, None, "a forged hour is not shown");
    assert!(answer(&effects).is_some());
    let (after, effects) = press(&b, &session, Press::Time { hour: 9, minute: 0 });
    assert_eq!(at(&after), "t/ask");
    assert!(answer(&effects).is_some());
    let (after, effects) = run(&b, &session, EventKind::Text { text: "10:45".into() });
    assert_eq!(at(&after), "idle");
    assert!(texts(&effects).iter().any(|t| t == "10:45"));
}

#[test]
fn a_looping_flow_is_stopped_without_flooding_the_chat() {
    let b = bundle(&[(
        "t",
        r#"
kind: flow
id: t
steps:
  hello:
    say: "բարև"
    next:
      - { if: "user_id == 0", goto: done }
      - { goto: again }
  again:
    say: "կրկին"
    next: hello
  done:
    say: "վերջ"
    end: true
"#,
    )]);
    let (session, effects) = start(&b);
    let sent = texts(&effects);
    assert_eq!(sent.len(), 1, "only the error message is sent: {sent:?}");
    assert!(sent[0].contains("Ներքին սխալ"));
    assert!(session.is_idle());
    assert!(effects.iter().any(|e| matches!(e, Effect::Warn { message } if message.contains("loops"))));
}

#[test]
fn long_texts_and_captions_respect_telegram_limits() {
    let b = bundle(&[(
        "t",
        r#"
kind: flow
id: t
slots: { body: text, photo: { type: media, default: { kind: photo, file_id: "AgAD" } } }
steps:
  ask:
    say: "Տեքստը՝"
    input: { type: text, save_as: body }
    next: show
  show:
    say: "<b>{{ body }}</b>"
    media: photo
    buttons: [{ label: "Լավ", end: true }]
"#,
    )]);
    let (session, _) = start(&b);
    let long = "Բարև 😀 ".repeat(900); // ~6300 UTF-16 units
    let (_, effects) = run(&b, &session, EventKind::Text { text: long });
    let messages: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { message } => Some(message),
            _ => None,
        })
        .collect();
    // The photo alone, then the text in parts, with the keyboard on the last one.
    assert!(messages[0].media.is_some() && messages[0].text.is_empty());
    assert!(messages.len() >= 3, "{} messages", messages.len());
    for message in &messages[1..] {
        assert!(message.media.is_none());
        assert!(html::visible_utf16_len(&message.text) <= 4096);
        assert_eq!(html::sanitize(&message.text), message.text);
    }
    assert!(matches!(messages.last().map(|m| &m.keyboard), Some(Keyboard::Inline(_))));
    assert!(messages[1..messages.len() - 1].iter().all(|m| m.keyboard == Keyboard::None));
}

#[test]
fn a_flow_called_from_a_button_returns_to_the_calling_step() {
    let b = bundle(&[
        (
            "t",
            r#"
kind: flow
id: t
slots: { name: text }
steps:
  menu:
    say: "Ընտրացանկ"
    buttons:
      - { label: "Անուն", call: ask_name }
      - { label: "Փակել", end: true }
"#,
        ),
        (
            "ask_name",
            r#"
kind: flow
id: ask_name
slots: { name: text }
steps:
  ask:
    say: "Անունը՝"
    input: { type: text, save_as: name }
    next: thanks
  thanks:
    say: "Շնորհակալություն, {{ name }}"
    end: true
"#,
        ),
    ]);
    let (session, _) = start(&b);
    let (session, _) = press(&b, &session, Press::Button(0));
    assert_eq!(at(&session), "ask_name/ask");
    let (session, effects) = run(&b, &session, EventKind::Text { text: "Անի".into() });
    let sent = texts(&effects);
    assert_eq!(sent, vec!["Շնորհակալություն, Անի".to_string(), "Ընտրացանկ".to_string()]);
    assert_eq!(at(&session), "t/menu");
    assert_eq!(session.wait, Wait::User);
}

#[test]
fn a_step_whose_buttons_are_all_hidden_moves_on() {
    let b = bundle(&[(
        "t",
        r#"
kind: flow
id: t
slots: { vip: { type: bool, default: false } }
steps:
  offer:
    say: "Առաջարկ"
    buttons:
      - { label: "VIP", goto: done, if: "vip" }
    next: done
  done:
    say: "Վերջ"
    end: true
"#,
    )]);
    let (session, effects) = start(&b);
    assert_eq!(texts(&effects), vec!["Առաջարկ".to_string(), "Վերջ".to_string()]);
    assert!(session.is_idle());
}

#[test]
fn skip_true_uses_the_menu_text_and_start_falls_back_to_start_flow() {
    let b = bundle(&[(
        "t",
        r#"
kind: flow
id: t
slots: { note: text }
steps:
  ask:
    say: "Նշում"
    input: { type: text, save_as: note, skip: true }
    next: done
  done:
    say: "ok"
    end: true
"#,
    )]);
    let (_, effects) = start(&b);
    let labels = keyboards(&effects);
    assert_eq!(labels, vec!["Բաց թողնել ⏭"]);

    // Without a /start command, /start runs the menu's start_flow.
    let flows = [("t", "kind: flow\nid: t\nsteps:\n  hi:\n    say: \"բարև\"\n    end: true\n")];
    let b = bundle_with_menu(
        |menu| menu.lines().filter(|l| !l.contains("command: start")).collect::<Vec<_>>().join("\n"),
        &flows,
    );
    assert!(b.menu.commands.iter().any(|c| c.name == "start" && !c.listed), "an unlisted /start is added");
    let (_, effects) = start(&b);
    assert_eq!(texts(&effects), vec!["բարև".to_string()]);
}

#[test]
fn a_session_outlives_a_configuration_change() {
    let before = bundle(&[(
        "t",
        r#"
kind: flow
id: t
steps:
  work:
    action: { name: ai.generate, with: { format: basic, keywords: "x" } }
    next: done
  done:
    say: "done"
    end: true
"#,
    )]);
    let (session, effects) = start(&before);
    assert!(matches!(session.wait, Wait::Action { .. }));
    assert!(effects.iter().any(|e| matches!(e, Effect::RunAction { .. })));
    // The step no longer runs an action: the pending action must not be carried out, and the
    // session must not answer "busy" forever.
    let after = bundle(&[(
        "t",
        r#"
kind: flow
id: t
steps:
  work:
    say: "changed"
    buttons: [{ label: "ok", end: true }]
"#,
    )]);
    assert!(!postflow::engine::pending_is_current(&after, &session));
    let (session, effects) = run(&after, &session, EventKind::Text { text: "hello".into() });
    assert!(session.is_idle());
    assert!(session.pending.is_none());
    // The admin is told their step is gone (once; the text is not taken as a new request).
    let said = texts(&effects);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("այս քայլն այլևս չկա"), "{said:?}");
    // A result for the old request is ignored.
    let (session, effects) = run(
        &after,
        &session,
        EventKind::ActionResult { request_id: 0, outcome: ActionOutcome::Ok { value: serde_json::json!({}) } },
    );
    assert!(session.is_idle());
    assert!(texts(&effects).is_empty());
}

#[test]
fn a_value_of_the_wrong_type_for_its_slot_is_a_clear_runtime_error() {
    let b = bundle(&[(
        "t",
        r#"
kind: flow
id: t
slots: { picked: number }
steps:
  pick:
    say: "Ընտրեք"
    list:
      items: "['ա', 'բ']"
      label: "{{ item }}"
      save_as: picked
    next: done
  done:
    say: "{{ picked }}"
    end: true
"#,
    )]);
    let (session, _) = start(&b);
    let (session, effects) = press(&b, &session, Press::Item(0));
    assert!(session.is_idle());
    assert!(texts(&effects).iter().any(|t| t.contains("Ներքին սխալ")));
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Warn { message } if message.contains("slot `picked` is `number`")))
    );
    assert!(!texts(&effects).iter().any(|t| t == "ա"), "nothing runs after the error");
}

#[test]
fn a_failed_action_shows_the_menu_words_for_its_code_never_the_technical_detail() {
    let b = bundle(&[(
        "t",
        r#"
kind: flow
id: t
slots: { posts: list }
steps:
  load:
    action: { name: posts.list, save_as: posts, on_error: failed }
    next: done
  done:
    say: "ok"
    end: true
  failed:
    say: "⚠️ {{ error }}"
    end: true
"#,
    )]);
    let words = |key: &str| {
        let template = b.menu.texts.get(key).unwrap();
        postflow::engine::render::render(&b, template, &minijinja::Value::UNDEFINED).unwrap()
    };
    for (code, key) in [("not_found", "error_not_found"), ("no_such_code", "error_unavailable")] {
        let (session, _) = start(&b);
        let request_id = match &session.wait {
            Wait::Action { request_id } => *request_id,
            other => panic!("waits for {other:?}"),
        };
        let outcome = ActionOutcome::Failed { code: code.into(), detail: "post 9 in table posts".into() };
        let (session, effects) = run(&b, &session, EventKind::ActionResult { request_id, outcome });
        let sent = texts(&effects);
        assert_eq!(sent, vec![format!("⚠️ {}", words(key))], "{code}");
        assert!(!sent[0].contains("post 9"));
        assert!(effects.iter().any(|e| matches!(e, Effect::Warn { message } if message.contains("post 9"))), "logged");
        assert!(session.is_idle());
    }
}
