//! The AI in `postflow run`: the real teloxide client against the fake Bot API and the real
//! async-openai client against the fake OpenAI server. A failing model ends in an Armenian
//! message with "try again" / "write it myself" and loses nothing; the admin can cancel while the
//! model works; a request cut off by a restart is carried out after it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::bot::{Bot, Setup, plain};
use common::fake_openai::{API_KEY, FakeOpenAi, Fault};
use common::fake_telegram::Output;
use postflow::ai::Ai;
use postflow::ai::openai::{OpenAi, OpenAiSettings, RetryPolicy};
use postflow::engine::session::Wait;

const ADMIN: i64 = 1001;

fn setup(fake: &FakeOpenAi, timeout: Duration) -> Setup {
    let retry = RetryPolicy { attempts: 2, sleep: Arc::new(|_| Box::pin(async {})), ..RetryPolicy::default() };
    let model = OpenAi::new(OpenAiSettings {
        api_key: API_KEY.to_string(),
        base_url: Some(fake.base_url()),
        model: "test-model".to_string(),
        timeout,
        retry,
    })
    .unwrap();
    Setup { ai: Arc::new(Ai::new(Arc::new(model))), ..Setup::default() }
}

fn no_violations(bot: &Bot) {
    let violations = bot.fake.violations();
    assert!(violations.is_empty(), "the bot broke Telegram's rules: {violations:#?}");
}

fn labels(outputs: &[Output]) -> Vec<String> {
    outputs.last().map(|o| o.inline_buttons().into_iter().map(|(label, _)| label).collect()).unwrap_or_default()
}

/// Waits until `done` holds (the AI works in the background).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn to_keywords(bot: &Bot) {
    bot.say(ADMIN, "📝 Նոր գրառում");
    bot.press(ADMIN, "Վաճառող փոստ");
    bot.say(ADMIN, "կաշվե պայուսակ, 20% զեղչ");
}

#[test]
fn a_failing_model_gets_a_clear_message_and_try_again_keeps_everything() {
    let fake = FakeOpenAi::start_in_thread();
    fake.set_always(Some(Fault::ServerError(500)));
    let bot = Bot::start(setup(&fake, Duration::from_secs(10)));
    to_keywords(&bot);
    let reply = bot.press(ADMIN, "Բաց թողնել ⏭");
    let text = plain(&reply);
    assert!(text.contains("Պատրաստում եմ տեքստը"), "{text}");
    assert!(text.contains("Չհաջողվեց ստեղծել տեքստը՝ AI ծառայությունն այս պահին հասանելի չէ"), "{text}");
    assert!(!text.contains("500") && !text.contains("HTTP"), "no technical detail for the admin: {text}");
    assert_eq!(labels(&reply), ["🔁 Կրկին փորձել", "✍️ Գրել ինքս", "✖️ Չեղարկել"]);
    assert_eq!(fake.completions().len(), 2, "retried up to the bound");
    let session = bot.session(ADMIN).unwrap();
    assert_eq!(session.slots["keywords"], "կաշվե պայուսակ, 20% զեղչ", "the keywords are kept");

    fake.set_always(None);
    let reply = bot.press(ADMIN, "🔁 Կրկին փորձել");
    let text = plain(&reply);
    assert!(text.contains("Տարբերակ 1") && text.contains("Ի՞նչ անենք տեքստի հետ"), "{text}");
    assert!(!text.contains("Օֆլայն"), "a model's draft is not labelled offline");

    // An improve that fails keeps the draft; "write it myself" is offered.
    fake.push_fault(Fault::Truncated);
    bot.press(ADMIN, "✨ Բարելավել");
    let reply = bot.press(ADMIN, "Առանց ցուցումի ⏭");
    let text = plain(&reply);
    assert!(text.contains("Չստացվեց՝ AI-ի պատասխանը կիսատ մնաց") && text.contains("Տեքստը չի փոխվել"), "{text}");
    assert_eq!(labels(&reply), ["🔁 Կրկին փորձել", "✍️ Գրել ինքս", "⬅️ Վերադառնալ տեքստին"]);
    let draft = bot.session(ADMIN).unwrap().slots["draft"].clone();
    assert!(draft.as_str().unwrap().contains("Տարբերակ 1"), "the draft survived: {draft}");
    let reply = bot.press(ADMIN, "🔁 Կրկին փորձել");
    // The fake numbers its 200 answers; the truncated one was the second.
    assert!(plain(&reply).contains("Տարբերակ 3"), "{}", plain(&reply));
    assert!(labels(&reply).contains(&"↩️ Նախորդ տարբերակը".to_string()), "the earlier draft can be restored");

    // Every model call is accounted, with its outcome.
    let events = bot.store().events().unwrap();
    let outcomes: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["kind"] == "ai_call")
        .map(|e| (e["action"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [("ai.generate", "unavailable"), ("ai.generate", "ok"), ("ai.improve", "truncated"), ("ai.improve", "ok")]
    );
    assert!(events.iter().all(|e| e["model"] == "test-model" && e["chat_id"] == ADMIN));
    no_violations(&bot);
}

#[test]
fn the_admin_can_cancel_while_the_model_works_and_is_told_it_is_busy() {
    let fake = FakeOpenAi::start_in_thread();
    fake.set_always(Some(Fault::Hang));
    let bot = Bot::start(setup(&fake, Duration::from_secs(120)));
    to_keywords(&bot);
    let press = bot.fake.press_label(ADMIN, "Բաց թողնել ⏭").unwrap();
    eventually("the model request", || fake.completions().len() == 1);
    let busy = bot.say(ADMIN, "դե՞");
    assert!(plain(&busy).contains("դեռ աշխատում եմ"), "{}", plain(&busy));
    assert!(bot.fake.calls().iter().any(|c| c.method == "sendChatAction"), "typing shows while the model works");
    let cancelled = bot.say(ADMIN, "/cancel");
    assert!(plain(&cancelled).contains("Չեղարկված է"), "{}", plain(&cancelled));
    bot.wait(&[press]);
    let session = bot.session(ADMIN).unwrap();
    assert!(session.is_idle() && session.pending.is_none(), "{session:?}");
    // Nothing arrives later from the abandoned request, and "typing…" stops with it (it is
    // renewed every 4.5 s while a model works).
    fake.set_always(None);
    let typing = || bot.fake.calls().iter().filter(|c| c.method == "sendChatAction").count();
    let typed = typing();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(typing(), typed, "typing stopped with the request");
    assert!(!plain(&bot.fake.outputs()).contains("Տարբերակ"), "no draft after the cancel");
    no_violations(&bot);
}

#[test]
fn a_model_request_cut_off_by_a_restart_is_carried_out_after_it() {
    let fake = FakeOpenAi::start_in_thread();
    fake.set_always(Some(Fault::Hang));
    let mut bot = Bot::start(setup(&fake, Duration::from_secs(120)));
    to_keywords(&bot);
    bot.fake.press_label(ADMIN, "Բաց թողնել ⏭").unwrap();
    eventually("the model request", || fake.completions().len() == 1);
    bot.shutdown().unwrap();
    fake.set_always(None);
    let mut waiting = None;
    eventually("the store to be free", || {
        waiting = postflow::store::Store::open(&bot.store_path).ok();
        waiting.is_some()
    });
    let session = waiting.take().unwrap().load_session(ADMIN).unwrap().unwrap();
    assert!(matches!(session.wait, Wait::Action { .. }), "the session still waits: {session:?}");
    bot.restart(setup(&fake, Duration::from_secs(120)));
    eventually("the draft after the restart", || plain(&bot.fake.outputs()).contains("Տարբերակ 1"));
    eventually("the review step", || {
        bot.session(ADMIN).and_then(|s| s.current().map(|f| f.step.clone())).as_deref() == Some("review")
    });
    no_violations(&bot);
}
