//! Hot reload in `postflow run`: the real bot watches a copy of the shipped configuration; edits
//! serve from the next message, a broken edit changes nothing and is told to the admins, and a
//! conversation in progress keeps its step or is told it is gone.

mod common;

use std::path::Path;

use common::bot::{Bot, Setup, plain};

const ADMIN: i64 = 1001;
const OTHER_ADMIN: i64 = 1002;

/// A two-step help flow, so a conversation can be caught between its steps.
const HELP: &str = r#"kind: flow
id: help
title: Օգնություն
slots:
  name: text
steps:
  ask:
    say: "Ձեր անունը՝"
    input: { type: text, save_as: name }
    next: thanks
  thanks:
    say: "Շնորհակալություն, {{ name }}։"
    end: true
"#;

fn write(config: &Path, file: &str, text: &str) {
    std::fs::write(config.join(file), text).unwrap();
}

fn edit(config: &Path, file: &str, from: &str, to: &str) {
    let path = config.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has {from:?}");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn start(config: &Path) -> Bot {
    common::copy_shipped_config(config);
    write(config, "flows/help.yaml", HELP);
    Bot::start_in(config, Setup { authorized: vec![ADMIN, OTHER_ADMIN], hot_reload: true, ..Setup::default() })
}

/// Waits until the bot serves bundle `version`.
fn serves(bot: &Bot, version: u64) {
    let live = bot.reloader.as_ref().expect("hot reload").live();
    bot.wait_for(&format!("configuration version {version}"), || live.version() >= version);
}

fn reply_labels(shown: &[common::fake_telegram::Output]) -> Vec<String> {
    match common::bot::out_message(shown.last().expect("a reply")).keyboard {
        postflow::engine::event::Keyboard::Reply(rows) => rows.concat(),
        _ => Vec::new(),
    }
}

fn menu_labels(bot: &Bot) -> Vec<String> {
    reply_labels(&bot.say(ADMIN, "/start"))
}

#[test]
fn an_edited_label_serves_at_once_and_a_broken_edit_changes_nothing_but_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path();
    let bot = start(config);
    assert!(menu_labels(&bot).contains(&"❓ Օգնություն".to_string()));
    bot.say(OTHER_ADMIN, "/start"); // Telegram lets a bot write only to whoever wrote to it.

    edit(config, "flows/menu.yaml", "❓ Օգնություն", "❓ Հարցեր");
    serves(&bot, 1);
    let labels = menu_labels(&bot);
    assert!(labels.contains(&"❓ Հարցեր".to_string()), "{labels:?}");
    assert!(bot.say(ADMIN, "❓ Հարցեր").iter().any(|o| o.plain.contains("Ձեր անունը")), "the button works");
    bot.say(ADMIN, "Անի");

    // A button that leads nowhere: refused, the admins are told where, the bot serves on.
    let before = bot.fake.outputs().len();
    edit(config, "flows/menu.yaml", "{ label: \"❓ Հարցեր\", flow: help }", "{ label: \"❓ Xyz\", flow: helpp }");
    bot.wait_for("the admins to hear of the refused change", || {
        let told: Vec<i64> =
            bot.fake.outputs()[before..].iter().filter(|o| o.plain.contains("չընդունվեց")).map(|o| o.chat_id).collect();
        told.contains(&ADMIN) && told.contains(&OTHER_ADMIN)
    });
    let told = bot.fake.outputs()[before..].iter().find(|o| o.chat_id == ADMIN).unwrap().clone();
    assert!(told.plain.contains("1 խնդիր"), "{}", told.plain);
    assert!(told.plain.contains("flows/menu.yaml:"), "where: {}", told.plain);
    assert!(told.plain.contains("helpp"), "what: {}", told.plain);
    assert!(told.plain.contains("{ label: \"❓ Xyz\", flow: helpp }"), "the line, escaped once: {}", told.plain);
    assert_eq!(bot.reloader.as_ref().unwrap().live().version(), 1, "still the last good version");
    let labels = menu_labels(&bot);
    assert!(labels.contains(&"❓ Հարցեր".to_string()) && !labels.contains(&"❓ Xyz".to_string()), "{labels:?}");

    // Saved again, still broken the same way: not news, the admins are not told again.
    let reloads = bot.reloader.as_ref().unwrap().finished();
    let broken = std::fs::read_to_string(config.join("flows/menu.yaml")).unwrap();
    write(config, "flows/menu.yaml", &broken);
    bot.wait_for("the save to be looked at", || bot.reloader.as_ref().unwrap().finished() > reloads);

    // `/reload` on demand says the same to whoever asks; once fixed, the files load again.
    let answer = plain(&bot.say(ADMIN, "/reload"));
    assert!(answer.contains("չընդունվեց"), "{answer}");
    edit(config, "flows/menu.yaml", "{ label: \"❓ Xyz\", flow: helpp }", "{ label: \"❓ Xyz\", flow: help }");
    serves(&bot, 2);
    assert!(menu_labels(&bot).contains(&"❓ Xyz".to_string()));
    let unchanged = bot.fake.send_text(ADMIN, "/reload");
    bot.wait(&[unchanged]);
    let answer = plain(&bot.fake.outputs_after(ADMIN, unchanged));
    assert!(answer.contains("փոփոխություն չկա"), "{answer}");
    // Telegram delivers the `/reload` again: it is recognised, not carried out twice. The chat
    // works through its updates in order, so once `/start` is answered the repeat was seen.
    bot.fake.redeliver(unchanged);
    let after = bot.fake.send_text(ADMIN, "/start");
    bot.wait(&[after]);
    let answers = bot.fake.outputs_after(ADMIN, unchanged);
    assert_eq!(answers.iter().filter(|o| o.plain.contains("փոփոխություն չկա")).count(), 1, "{answers:?}");
    let refusals_to_other_admin = bot.fake.outputs()[before..]
        .iter()
        .filter(|o| o.chat_id == OTHER_ADMIN && o.plain.contains("չընդունվեց"))
        .count();
    assert_eq!(refusals_to_other_admin, 1, "told once of the same problems");
    let violations = bot.fake.violations();
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn a_conversation_keeps_its_step_across_a_reload_or_is_told_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path();
    let bot = start(config);

    // The step stays: the conversation goes on, on the new version.
    assert!(plain(&bot.say(ADMIN, "❓ Օգնություն")).contains("Ձեր անունը"));
    edit(config, "flows/help.yaml", "Շնորհակալություն, {{ name }}։", "Շնորհակալ ենք, {{ name }}։");
    serves(&bot, 1);
    assert_eq!(plain(&bot.say(ADMIN, "Անի")), "Շնորհակալ ենք, Անի։");

    // The step goes: the admin is told politely and gets the menu.
    assert!(plain(&bot.say(ADMIN, "❓ Օգնություն")).contains("Ձեր անունը"));
    edit(config, "flows/help.yaml", "  ask:\n", "  question:\n");
    serves(&bot, 2);
    let shown = bot.say(ADMIN, "Անի");
    let text = plain(&shown);
    assert!(text.contains("այս քայլն այլևս չկա"), "{text}");
    assert_eq!(shown.len(), 1, "one message, not also `unknown input`: {text}");
    assert!(!text.contains("Շնորհակալ"), "the old step did not run: {text}");
    let keyboard = reply_labels(&shown);
    assert!(keyboard.contains(&"📝 Նոր գրառում".to_string()), "the menu: {keyboard:?}");
    // And the next conversation runs the new flow.
    assert!(plain(&bot.say(ADMIN, "❓ Օգնություն")).contains("Ձեր անունը"));
    assert_eq!(plain(&bot.say(ADMIN, "Արամ")), "Շնորհակալ ենք, Արամ։");
}

#[test]
fn an_edited_prompt_is_in_the_next_model_request() {
    use postflow::ai::Ai;
    use postflow::ai::openai::{OpenAi, OpenAiSettings, RetryPolicy};
    let model_server = common::fake_openai::FakeOpenAi::start_in_thread();
    let model = OpenAi::new(OpenAiSettings {
        api_key: common::fake_openai::API_KEY.to_string(),
        base_url: Some(model_server.base_url()),
        model: "test-model".to_string(),
        timeout: std::time::Duration::from_secs(30),
        retry: RetryPolicy::default(),
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path();
    common::copy_shipped_config(config);
    let ai = std::sync::Arc::new(Ai::new(std::sync::Arc::new(model)));
    let bot = Bot::start_in(config, Setup { hot_reload: true, ai, ..Setup::default() });
    let draft = |bot: &Bot| {
        bot.say(ADMIN, "📝 Նոր գրառում");
        bot.press(ADMIN, "Վաճառող փոստ");
        bot.say(ADMIN, "կաշվե պայուսակ");
        let requests = model_server.completions().len();
        bot.fake.press_label(ADMIN, "Բաց թողնել ⏭").unwrap();
        bot.wait_for("the model request", || model_server.completions().len() > requests);
        model_server.completions().last().unwrap().message("user").unwrap()
    };
    let before = draft(&bot);
    assert!(before.contains("Բանալի բառեր՝ կաշվե պայուսակ") && !before.contains("Հիշիր"), "{before}");
    bot.say(ADMIN, "/cancel");

    edit(config, "prompts/ai/generate.j2", "Պատասխանիր միայն", "Հիշիր՝ առանց բացականչականների։\nՊատասխանիր միայն");
    serves(&bot, 1);
    let after = draft(&bot);
    assert!(after.contains("Հիշիր՝ առանց բացականչականների։"), "the edited prompt is sent: {after}");
}
