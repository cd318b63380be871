//! `postflow run` end to end: the real teloxide client, engine and redb store against the fake
//! Bot API server, which records every breach of Telegram's rules.

mod common;

use std::time::Duration;

use common::bot::{Bot, Setup, TelegramChat, plain};
use common::fake_telegram::Faults;
use postflow::console::Screen;
use postflow::conversation::{Script, run_script_on};

const ADMIN: i64 = 1001;

fn no_violations(bot: &Bot) {
    let violations = bot.fake.violations();
    assert!(violations.is_empty(), "the bot broke Telegram's rules: {violations:#?}");
}

/// A selling post from the main menu to the media step: keywords, no details, approved draft.
fn to_the_media_step(bot: &Bot, keywords: &str) {
    bot.say(ADMIN, "📝 Նոր գրառում");
    bot.press(ADMIN, "Վաճառող փոստ");
    bot.say(ADMIN, keywords);
    bot.press(ADMIN, "Բաց թողնել ⏭");
    bot.press(ADMIN, "✅ Հաստատել");
}

#[test]
fn the_shipped_conversation_scripts_pass_in_run_as_they_do_in_chat() {
    let root = common::bot::shipped_config();
    let mut scripts: Vec<_> = std::fs::read_dir(root.join("tests/conversations"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 5, "the shipped scripts are there");
    // Each script gets its own bot, store and fake Telegram; they run side by side.
    let runs: Vec<_> = scripts
        .into_iter()
        .map(|path| {
            std::thread::spawn(move || {
                let script: Script = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                let bot = Bot::start(Setup { authorized: vec![script.user], ..Setup::default() });
                let mut chat = TelegramChat { bot: &bot, screen: Screen::default() };
                let result = run_script_on(&mut chat, &script, root).unwrap();
                (path, result, bot.fake.violations())
            })
        })
        .collect();
    for run in runs {
        let (path, result, violations) = run.join().unwrap();
        if let Err(failure) = result {
            panic!(
                "{} failed in `run` at turn {} ({}): {:?}\nthe bot showed:\n{}\nviolations: {violations:#?}",
                path.display(),
                failure.turn,
                failure.action,
                failure.problems,
                failure.reply
            );
        }
        assert!(violations.is_empty(), "{}: the bot broke Telegram's rules: {violations:#?}", path.display());
    }
}

#[test]
fn an_outsider_is_refused_once_and_reaches_no_flow_action_or_store() {
    let bot = Bot::start(Setup { authorized: vec![ADMIN], ..Setup::default() });
    let outsider = 666;
    bot.fake.name_user(outsider, "Stranger", Some("stranger"));
    let first = bot.say(outsider, "/start");
    assert_eq!(first.len(), 1, "one refusal: {first:?}");
    assert!(first[0].plain.contains("հասանելի է միայն"), "the refusal is the Armenian config text: {}", first[0].plain);
    // Everything after that is ignored for a while: texts, commands, media, presses, forgeries.
    let mut later = vec![
        bot.fake.send_text(outsider, "📝 Նոր գրառում"),
        bot.fake.send_text(outsider, "/help"),
        bot.fake.send_media(outsider, "photo", "stolen-photo"),
    ];
    // A press with data copied from an admin's keyboard: still nothing.
    bot.say(ADMIN, "📝 Նոր գրառում");
    let (message_id, data) = bot.fake.find_button(ADMIN, "Վաճառող փոստ").unwrap();
    later.push(bot.fake.press(outsider, message_id, &data));
    later.push(bot.fake.press(outsider, 1, "garbage"));
    bot.wait(&later);
    for id in &later {
        assert!(bot.fake.outputs_after(outsider, *id).is_empty(), "update {id} got a reply");
    }
    assert_eq!(bot.fake.unanswered_presses(), 0, "the outsider's presses are answered (silently)");
    assert!(bot.session(outsider).is_none(), "no session for an outsider");
    assert!(bot.store().posts().unwrap().is_empty(), "no post");
    let users = bot.store().users().unwrap();
    assert_eq!(users.iter().map(|u| u.id).collect::<Vec<_>>(), vec![ADMIN], "only the admin is recorded");
    assert_eq!(users[0].username.as_deref(), Some("user1001"));
    assert_eq!(users[0].last_active, 1_795_672_800);
    // The admin's own flow was not disturbed by the outsider's press.
    assert_eq!(bot.session(ADMIN).unwrap().current().map(|f| f.step.as_str()), Some("choose_format"));
    no_violations(&bot);
}

#[test]
fn groups_channel_posts_and_edited_messages_are_ignored() {
    let bot = Bot::start(Setup { authorized: vec![ADMIN], ..Setup::default() });
    let ids = vec![bot.fake.send_group_text(ADMIN, -4242, "/start"), bot.fake.edit_text(ADMIN, 1, "/start")];
    bot.wait(&ids);
    assert!(bot.fake.outputs().is_empty(), "nothing answered: {:?}", bot.fake.outputs());
    assert!(bot.session(ADMIN).is_none());
    assert!(bot.store().users().unwrap().is_empty());
}

#[test]
fn a_stale_button_gets_the_outdated_answer_and_a_forged_one_is_refused() {
    let bot = Bot::start(Setup::default());
    bot.say(ADMIN, "📝 Նոր գրառում");
    let (old_message, old_data) = bot.fake.find_button(ADMIN, "Վաճառող փոստ").unwrap();
    bot.press(ADMIN, "Վաճառող փոստ");
    bot.say(ADMIN, "կաշվե պայուսակ, զեղչ");
    let at = |bot: &Bot| bot.session(ADMIN).unwrap().current().map(|f| f.step.clone());
    let before = at(&bot);
    // The format keyboard was edited away; a press on its old data is outdated.
    let stale = bot.fake.press(ADMIN, old_message, &old_data);
    bot.wait(&[stale]);
    let answer = bot.fake.answers().into_iter().find(|a| a.update_id == stale).expect("the stale press is answered");
    assert!(answer.text.as_deref().is_some_and(|t| t.contains("արդիական չէ")), "outdated: {answer:?}");
    assert_eq!(at(&bot), before, "a stale press changes nothing");
    let forged = bot.fake.press(ADMIN, old_message, "zz.forged-data");
    bot.wait(&[forged]);
    assert!(bot.fake.answers().iter().any(|a| a.update_id == forged), "a forged press is answered");
    assert_eq!(at(&bot), before, "a forged press changes nothing");
    no_violations(&bot);
}

#[test]
fn a_429_storm_a_5xx_burst_dropped_connections_and_slow_answers_lose_nothing() {
    let bot = Bot::start(Setup::default());
    bot.fake.set_faults(Faults { too_many_requests: 6, retry_after: 1, ..Faults::default() });
    let reply = bot.say(ADMIN, "📝 Նոր գրառում");
    assert!(plain(&reply).contains("Ընտրեք գրառման ձևաչափը"), "the reply arrived after the storm: {reply:?}");
    bot.fake.set_faults(Faults { dropped: 2, delay: Duration::from_millis(300), ..Faults::default() });
    let reply = bot.press(ADMIN, "Վաճառող փոստ");
    assert!(plain(&reply).contains("Գրեք բանալի բառերը"), "the reply arrived after dropped connections: {reply:?}");
    // teloxide waits 10 s after every 5xx answer, so a burst costs tens of seconds: it goes on a
    // typed step (a press must be answered within 15 s).
    bot.fake.set_faults(Faults { server_errors: 2, ..Faults::default() });
    let reply = bot.say(ADMIN, "կաշվե պայուսակ, նոր հավաքածու");
    assert!(plain(&reply).contains("Ավելացնե՞լ մանրամասներ"), "the reply arrived after the 5xx burst: {reply:?}");
    bot.fake.set_faults(Faults::default());
    let failed: Vec<_> = bot.fake.calls().into_iter().filter(|c| c.error.is_some()).collect();
    assert_eq!(failed.len(), 10, "every injected fault happened: {failed:?}");
    assert_eq!(bot.fake.unanswered_presses(), 0);
    no_violations(&bot);
}

#[test]
fn an_album_is_one_event_and_its_preview_puts_the_buttons_on_a_message_after_it() {
    let bot = Bot::start(Setup::default());
    to_the_media_step(&bot, "կաշվե պայուսակ, նոր հավաքածու");
    let parts = bot.fake.send_album(ADMIN, &[("photo", "bag-front"), ("photo", "bag-back"), ("video", "bag-video")]);
    bot.wait(&parts);
    let replies: Vec<_> = parts.iter().flat_map(|id| bot.fake.outputs_after(ADMIN, *id)).collect();
    let album = replies
        .iter()
        .find(|o| o.media.len() == 3)
        .unwrap_or_else(|| panic!("the preview re-sends the album by file id: {replies:#?}"));
    assert_eq!(
        album.media.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(),
        vec!["bag-front", "bag-back", "bag-video"]
    );
    let after = replies.iter().skip_while(|o| o.media.len() != 3).nth(1).expect("a message after the album");
    assert!(after.inline_buttons().iter().any(|(label, _)| label.contains("Պահել սևագիր")), "{after:?}");
    let saved = bot.press(ADMIN, "💾 Պահել սևագիր");
    assert!(plain(&saved).contains("Սևագիրը պահպանված է"));
    let post = &bot.store().posts().unwrap()[0];
    let media = post.media.as_ref().expect("the album is kept");
    assert_eq!(media.files().count(), 3);
    no_violations(&bot);
}

#[test]
fn a_redelivered_update_is_handled_once() {
    let bot = Bot::start(Setup::default());
    bot.say(ADMIN, "📝 Նոր գրառում");
    let press = bot.fake.press_label(ADMIN, "Վաճառող փոստ").unwrap();
    bot.wait(&[press]);
    let keywords = bot.fake.send_text(ADMIN, "կաշվե պայուսակ, նոր հավաքածու");
    bot.wait(&[keywords]);
    let step = bot.session(ADMIN).unwrap().current().map(|f| f.step.clone());
    // Telegram delivers the same update again (the bot died before acknowledging it).
    bot.fake.redeliver(keywords);
    bot.fake.redeliver(press);
    bot.wait(&[keywords, press]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(bot.fake.outputs_after(ADMIN, keywords).len(), 1, "one reply, not two");
    assert_eq!(bot.session(ADMIN).unwrap().current().map(|f| f.step.clone()), step, "the text was not taken twice");
    no_violations(&bot);
}

#[test]
fn a_flooding_admin_is_warned_once_and_ignored_for_a_while() {
    let flood = postflow::telegram::gate::FloodLimits {
        max_updates: 5,
        window: Duration::from_secs(60),
        mute: Duration::from_secs(600),
    };
    let bot = Bot::start(Setup { flood, ..Setup::default() });
    let ids: Vec<i64> = (0..9).map(|i| bot.fake.send_text(ADMIN, &format!("բարև {i}"))).collect();
    bot.wait(&ids);
    let warnings = bot.fake.outputs().into_iter().filter(|o| o.plain.contains("Չափազանց շատ")).count();
    assert_eq!(warnings, 1, "one warning");
    // Five replies, one warning, then silence (the updates were injected at once, so count).
    let outputs = bot.fake.outputs();
    assert_eq!(outputs.len(), 6, "ignored after the warning: {outputs:#?}");
    no_violations(&bot);
}

#[test]
fn start_up_sets_the_commands_from_the_yaml_and_a_restart_resumes_the_conversation() {
    let mut bot = Bot::start(Setup::default());
    let commands = bot.fake.commands();
    assert!(commands.iter().any(|(name, _)| name == "start"), "{commands:?}");
    assert!(commands.iter().any(|(name, _)| name == "help"), "{commands:?}");
    bot.say(ADMIN, "📝 Նոր գրառում");
    bot.press(ADMIN, "Վաճառող փոստ");
    bot.restart(Setup::default());
    // A new process knows nothing of the last message's time; a real restart takes longer than
    // Telegram's one-second gap, this one must wait for it.
    std::thread::sleep(Duration::from_millis(1100));
    let reply = bot.say(ADMIN, "կաշվե պայուսակ, նոր հավաքածու");
    assert!(plain(&reply).contains("Ավելացնե՞լ մանրամասներ"), "the flow went on after the restart: {reply:?}");
    no_violations(&bot);
}

#[test]
fn a_slow_step_is_answered_at_once_and_shows_typing() {
    // The offline AI is fast and runs inside the turn (a model runs outside it, see
    // tests/ai_telegram.rs); the press is still answered before the step's messages go out.
    let bot = Bot::start(Setup::default());
    bot.say(ADMIN, "📝 Նոր գրառում");
    bot.press(ADMIN, "Վաճառող փոստ");
    bot.say(ADMIN, "կաշվե պայուսակ, նոր հավաքածու");
    let before = bot.fake.calls().len();
    let press = bot.fake.press_label(ADMIN, "Բաց թողնել").unwrap();
    bot.wait(&[press]);
    let calls: Vec<String> = bot.fake.calls()[before..].iter().map(|c| c.method.clone()).collect();
    let position = |method: &str| calls.iter().position(|m| m == method);
    let answered = position("answerCallbackQuery").expect("the press is answered");
    let typing = position("sendChatAction").expect("typing shows while the AI runs");
    let reply = position("sendMessage").expect("the draft is sent");
    assert!(answered < typing && typing < reply, "answer, then typing, then the reply: {calls:?}");
    no_violations(&bot);
}

/// Every media message shape the fake produces parses in teloxide as the kind it is meant to be.
#[test]
fn teloxide_reads_the_fakes_media_messages() {
    for kind in ["photo", "video", "animation", "document"] {
        let mut message = serde_json::json!({
            "message_id": 1, "date": 1, "chat": { "id": 5, "type": "private", "first_name": "A" },
            "from": { "id": 5, "is_bot": false, "first_name": "A" }, "media_group_id": "g",
        });
        for (key, value) in common::fake_telegram::media_fields(kind, "f").as_object().unwrap() {
            message[key] = value.clone();
        }
        let parsed: teloxide::types::Message = serde_json::from_str(&message.to_string()).unwrap();
        let found = match kind {
            "photo" => parsed.photo().is_some(),
            "video" => parsed.video().is_some(),
            "animation" => parsed.animation().is_some(),
            _ => parsed.document().is_some(),
        };
        assert!(found, "{kind}: {parsed:?}");
    }
}

#[test]
fn a_busy_chat_does_not_hold_up_another() {
    let bot = Bot::start(Setup::default());
    let other = ADMIN + 1;
    // Twelve messages at once: their replies are paced one a second in that chat.
    let busy: Vec<i64> = (0..12).map(|i| bot.fake.send_text(ADMIN, &format!("բարև {i}"))).collect();
    let reply = bot.say(other, "📝 Նոր գրառում");
    assert!(plain(&reply).contains("Ընտրեք գրառման ձևաչափը"));
    let busy_replies = bot.fake.outputs().iter().filter(|o| o.chat_id == ADMIN).count();
    assert!(
        busy_replies < 12,
        "the other chat was answered while the busy one still had {} replies to go",
        12 - busy_replies
    );
    bot.wait(&busy);
    assert_eq!(
        bot.fake.outputs().iter().filter(|o| o.chat_id == ADMIN).count(),
        12,
        "every busy message answered, in order"
    );
    no_violations(&bot);
}

#[test]
fn an_edit_of_a_message_telegram_no_longer_has_is_sent_anew() {
    let bot = Bot::start(Setup::default());
    bot.clock.set(1_795_673_220); // 2026-11-26 10:07 in Yerevan
    to_the_media_step(&bot, "նոր հավաքածու");
    bot.press(ADMIN, "Առանց մեդիայի ⏭");
    bot.press(ADMIN, "📅 Պլանավորել");
    // The month arrow edits the calendar in place...
    let (calendar, next_month) = bot.fake.find_button(ADMIN, "▶️").unwrap();
    let edited = bot.fake.press(ADMIN, calendar, &next_month);
    bot.wait(&[edited]);
    let outputs = bot.fake.outputs_after(ADMIN, edited);
    assert!(outputs.iter().all(|o| o.edited) && !outputs.is_empty(), "navigation edits: {outputs:?}");
    // ...and when the message is gone (deleted in the chat), the new month comes as a new message.
    let (calendar, previous_month) = bot.fake.find_button(ADMIN, "◀️").unwrap();
    bot.fake.forget_message(ADMIN, calendar);
    let resent = bot.fake.press(ADMIN, calendar, &previous_month);
    bot.wait(&[resent]);
    let outputs = bot.fake.outputs_after(ADMIN, resent);
    assert!(
        outputs.iter().any(|o| !o.edited && o.inline_buttons().iter().any(|(label, _)| label == "Նոյեմբեր 2026")),
        "the calendar is sent anew: {outputs:?}"
    );
    let refused_edits = bot
        .fake
        .calls()
        .iter()
        .filter(|c| c.error.as_deref().is_some_and(|e| e.contains("message to edit not found")))
        .count();
    assert_eq!(refused_edits, 1, "Telegram refused the edit once, and the bot did not insist");
    no_violations(&bot);
}

#[test]
fn an_update_between_the_files_of_an_album_waits_for_the_album() {
    let bot = Bot::start(Setup::default());
    to_the_media_step(&bot, "կաշվե պայուսակ, նոր հավաքածու");
    // Telegram delivers a text between the album's files.
    let ids = vec![
        bot.fake.send_album_part(ADMIN, "g-mixed", "photo", "front"),
        bot.fake.send_text(ADMIN, "ահա"),
        bot.fake.send_album_part(ADMIN, "g-mixed", "photo", "back"),
        bot.fake.send_album_part(ADMIN, "g-mixed", "photo", "side"),
    ];
    bot.wait(&ids);
    let outputs = bot.fake.outputs();
    let albums: Vec<_> = outputs.iter().filter(|o| !o.media.is_empty()).collect();
    assert_eq!(albums.len(), 1, "one album, not split: {albums:#?}");
    assert_eq!(albums[0].media.len(), 3);
    let session = bot.session(ADMIN).unwrap();
    assert_eq!(session.current().map(|f| f.step.as_str()), Some("preview"), "the album was taken first");
    no_violations(&bot);
}
