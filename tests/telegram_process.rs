//! The `postflow run` binary as operators run it, against the fake Bot API: start-up problems
//! are one clear line and exit 1; SIGKILL mid-flow and a restart lose nothing; SIGTERM stops
//! cleanly; webhook mode checks Telegram's secret token.

mod common;

use common::wait_until;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fake_telegram::{CHANNEL_NAME, ChannelRights, FakeTelegram, TOKEN};

const ADMIN: i64 = 1001;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// `postflow run` against the fake, with the settings the operator would give.
fn run_command(fake: &FakeTelegram, store: &std::path::Path) -> Command {
    common::run_command(fake, store, ADMIN)
}

fn polls(fake: &FakeTelegram) -> usize {
    fake.calls().iter().filter(|c| c.method == "getUpdates").count()
}

/// Runs the binary to its end and returns (exit code, stderr).
fn fails_with(command: &mut Command) -> (Option<i32>, String) {
    let output = command.stdin(Stdio::null()).output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).trim().to_string())
}

/// A change to the command line of one start-up case.
type Adjust = Box<dyn Fn(&mut Command)>;

#[test]
fn start_up_problems_are_one_clear_line_and_exit_1() {
    let rt = runtime();
    let fake = rt.block_on(FakeTelegram::start());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.redb");
    let rights = |admin, can_post| ChannelRights { member: true, admin, can_post, can_edit: true, can_delete: true };
    let cases: Vec<(&str, Adjust, Option<ChannelRights>, &str)> = vec![
        (
            "no token",
            Box::new(|c| {
                c.env_remove("BOT_TOKEN");
            }),
            Some(rights(true, true)),
            "BOT_TOKEN is not set",
        ),
        (
            "a refused token",
            Box::new(|c| {
                c.env("BOT_TOKEN", "123456:wrongwrongwrongwrongwrongwrongwrong");
            }),
            Some(rights(true, true)),
            "Telegram refused BOT_TOKEN",
        ),
        (
            "no admins",
            Box::new(|c| {
                c.env("AUTHORIZED_USERS", "");
            }),
            Some(rights(true, true)),
            "AUTHORIZED_USERS is empty",
        ),
        (
            "an unreachable Bot API",
            Box::new(|c| {
                c.env("TELEGRAM_API_URL", "http://127.0.0.1:9");
            }),
            Some(rights(true, true)),
            "cannot reach the Bot API at http://127.0.0.1:9",
        ),
        ("a channel without the bot", Box::new(|_| {}), None, "Telegram does not know this channel"),
        ("a bot that is only a member", Box::new(|_| {}), Some(rights(false, false)), "is not an administrator"),
        ("a bot that may not post", Box::new(|_| {}), Some(rights(true, false)), "may not post messages"),
    ];
    for (case, adjust, rights, expected) in cases {
        fake.set_channel_rights(rights);
        let mut command = run_command(&fake, &store);
        adjust(&mut command);
        let (code, stderr) = fails_with(&mut command);
        assert_eq!(code, Some(1), "{case}: exit code; stderr: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{case}: one line, got:\n{stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(expected), "{case}: {stderr}");
        assert!(!stderr.contains(TOKEN), "{case}: the token never shows");
    }
}

#[test]
fn sigkill_mid_flow_then_a_restart_resumes_and_sigterm_stops_cleanly() {
    let rt = runtime();
    let fake = rt.block_on(FakeTelegram::start());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.redb");
    let log_path = dir.path().join("bot.log");
    let start = |fake: &FakeTelegram| {
        let before = polls(fake);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let child = Running(run_command(fake, &store).env("LOG_LEVEL", "debug").stderr(log).spawn().unwrap());
        wait_until("the bot to poll", || polls(fake) > before);
        child
    };
    let reply_to = |fake: &FakeTelegram, update: i64| {
        wait_until("a reply", || !fake.outputs_after(ADMIN, update).is_empty());
        common::bot::plain(&fake.outputs_after(ADMIN, update))
    };
    let mut bot = start(&fake);
    let new_post = fake.send_text(ADMIN, "📝 Նոր գրառում");
    assert!(reply_to(&fake, new_post).contains("Ընտրեք գրառման ձևաչափը"));
    let press = fake.press_label(ADMIN, "Վաճառող փոստ").unwrap();
    assert!(reply_to(&fake, press).contains("Գրեք բանալի բառերը"));
    bot.0.kill().unwrap();
    bot.0.wait().unwrap();
    drop(bot);
    std::thread::sleep(Duration::from_millis(1100));
    let bot = start(&fake);
    let keywords = fake.send_text(ADMIN, "կաշվե պայուսակ, նոր հավաքածու");
    assert!(reply_to(&fake, keywords).contains("Ավելացնե՞լ մանրամասներ"), "the flow went on after SIGKILL");
    let mut bot = bot;
    let pid = bot.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = bot.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop the bot");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "a clean stop exits 0: {status:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("stopping"), "the stop is logged");
    assert!(log.contains("pipelines checked in a child process"), "`run` checks its pipelines in a child process");
    let secret_part = TOKEN.split_once(':').unwrap().1;
    assert!(!log.contains(secret_part), "the token never reaches the logs, even at debug level");
    let violations = fake.violations();
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn webhook_mode_takes_updates_signed_with_the_secret_and_refuses_the_rest() {
    let rt = runtime();
    let fake = rt.block_on(FakeTelegram::start());
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hook = format!("http://127.0.0.1:{port}/telegram/hook");
    let _bot = Running(
        run_command(&fake, &dir.path().join("s.redb"))
            .args(["--webhook-url", &hook])
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .spawn()
            .unwrap(),
    );
    wait_until("the webhook to be set", || fake.webhook().is_some());
    let (url, secret) = fake.webhook().unwrap();
    assert_eq!(url, hook);
    let secret = secret.expect("a secret token is set with the webhook");
    assert!(secret.len() >= 16);
    // Telegram (the fake) pushes the update with the secret; the bot answers.
    let update = fake.send_text(ADMIN, "/start");
    wait_until("a reply through the webhook", || !fake.outputs_after(ADMIN, update).is_empty());
    // Anyone else posting to the webhook is refused.
    let forged = serde_json::json!({ "update_id": 1, "message": {
        "message_id": 1, "date": 0, "chat": { "id": ADMIN, "type": "private", "first_name": "X" },
        "from": { "id": ADMIN, "is_bot": false, "first_name": "X" }, "text": "/start" } });
    let client = reqwest::Client::new();
    for header in [None, Some("wrong-secret")] {
        let status = rt.block_on(async {
            let mut request = client.post(&hook).json(&forged);
            if let Some(header) = header {
                request = request.header("X-Telegram-Bot-Api-Secret-Token", header);
            }
            request.send().await.unwrap().status()
        });
        assert_eq!(status.as_u16(), 401, "secret {header:?}");
    }
    let violations = fake.violations();
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn doctor_checks_the_token_the_bots_rights_the_store_and_the_public_url() {
    let rt = runtime();
    let fake = rt.block_on(FakeTelegram::start());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.redb");
    let public = common::free_local_addr();
    let doctor = |fake: &FakeTelegram, token: &str, public_base: Option<&str>| {
        let mut command = common::postflow(&store, &["doctor"]);
        command
            .current_dir(dir.path())
            .env("BOT_TOKEN", token)
            .env("TELEGRAM_API_URL", &fake.url)
            .env("CHANNEL_ID", format!("@{CHANNEL_NAME}"))
            .env("AUTHORIZED_USERS", ADMIN.to_string())
            .env("HTTP_ADDR", &public)
            .env_remove("PUBLIC_BASE_URL");
        if let Some(base) = public_base {
            command.env("PUBLIC_BASE_URL", base);
        }
        let output = command.output().unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).to_string())
    };
    let (healthy, report) = doctor(&fake, TOKEN, Some(&format!("http://{public}/")));
    assert!(healthy, "{report}");
    let lines: Vec<&str> = report.lines().collect();
    assert!(lines.iter().all(|l| l.starts_with("✔ ") || l.starts_with("– ")), "{report}");
    for expected in [
        "✔ time zone: Asia/Yerevan: it is ",
        "✔ config: ",
        "✔ Telegram token: the bot is @shop_test_bot",
        "✔ Telegram channel: @shop_test_bot administers @time_2_shopping with the rights to post, edit and delete",
        "✔ admins: 1 authorised users",
        "– AI: offline (no OPENAI_API_KEY)",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(expected)), "no line {expected:?} in:\n{report}");
    }
    assert!(
        lines
            .contains(&format!("– store: {} does not exist yet: `run` and `chat` create it", store.display()).as_str())
    );
    assert!(!store.exists(), "doctor creates no store");
    // Nothing ran on HTTP_ADDR: a stand-in answered there for the check.
    assert!(lines.contains(
        &format!("✔ public URL: http://{public}/healthz reaches this machine's HTTP_ADDR {public}").as_str()
    ));

    postflow::store::Store::open(&store).unwrap().save_post(postflow::store::Post::draft("x", ADMIN, 1)).unwrap();
    fake.set_channel_rights(Some(ChannelRights {
        member: true,
        admin: true,
        can_post: true,
        can_edit: false,
        can_delete: true,
    }));
    let elsewhere = common::free_local_addr();
    let (healthy, report) = doctor(&fake, TOKEN, Some(&format!("http://{elsewhere}")));
    assert!(!healthy, "{report}");
    assert!(report.contains("✔ store: ") && report.contains(": schema 4, 1 posts, 0 events"), "{report}");
    assert!(
        report.contains("✘ Telegram channel: the bot administers @time_2_shopping but may not edit messages of others: grant these rights under the channel's Administrators"),
        "{report}"
    );
    assert!(
        report.contains(&format!("✘ public URL: http://{elsewhere}/healthz cannot be reached from here (")),
        "{report}"
    );
    assert!(
        report.contains("check its DNS, TLS certificate and the proxy or port forwarding to HTTP_ADDR"),
        "{report}"
    );

    let (healthy, report) = doctor(&fake, "123456:THIS-IS-NOT-THE-TOKEN-AT-ALL-000000", None);
    assert!(!healthy, "{report}");
    assert!(
        report.contains(
            "✘ Telegram token: Telegram refused BOT_TOKEN (401 Unauthorized): copy the token again from @BotFather"
        ),
        "{report}"
    );
    assert!(report.contains("– Telegram channel: not checked without a working token"), "{report}");
    assert!(report.contains("– public URL: PUBLIC_BASE_URL is not set"), "{report}");
    assert!(!report.contains("THIS-IS-NOT-THE-TOKEN"), "the token is never printed");
    assert!(fake.commands().is_empty(), "doctor changes nothing in Telegram");
}

#[test]
fn json_logs_put_updates_steps_ai_calls_and_requests_in_spans_and_never_a_secret() {
    let rt = runtime();
    let fake = rt.block_on(FakeTelegram::start());
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("bot.log");
    let http = common::free_local_addr();
    let api_key = "sk-test-0123456789abcdefghijklmnopqrstuv";
    let closed = common::free_local_addr();
    let log = std::fs::File::create(&log_path).unwrap();
    let mut bot = Running(
        run_command(&fake, &dir.path().join("s.redb"))
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "debug")
            .env("HTTP_ADDR", &http)
            .env("OPENAI_API_KEY", api_key)
            .env("OPENAI_BASE_URL", format!("http://{closed}/v1"))
            .env("OPENAI_MAX_ATTEMPTS", "1")
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_until("the bot to poll", || polls(&fake) > 0);
    let new_post = fake.send_text(ADMIN, "📝 Նոր գրառում");
    wait_until("a reply", || !fake.outputs_after(ADMIN, new_post).is_empty());
    let press = fake.press_label(ADMIN, "Վաճառող փոստ").unwrap();
    wait_until("a reply", || !fake.outputs_after(ADMIN, press).is_empty());
    let keywords = fake.send_text(ADMIN, "կաշվե պայուսակ");
    wait_until("a reply", || !fake.outputs_after(ADMIN, keywords).is_empty());
    // The details start a draft: the model (unreachable here) is asked.
    let details = fake.send_text(ADMIN, "Գինը՝ 25000 ֏");
    wait_until("the model's failure to be told", || fake.outputs_after(ADMIN, details).len() >= 2);
    let status = rt.block_on(async { reqwest::get(format!("http://{http}/r/nonsense")).await.unwrap().status() });
    assert_eq!(status.as_u16(), 404);
    let pid = bot.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while bot.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "SIGTERM did not stop the bot");
        std::thread::sleep(Duration::from_millis(50));
    }

    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.len() > 10, "{log}");
    let in_span = |name: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["spans"].as_array().is_some_and(|spans| spans.iter().any(|s| s["name"] == name)))
            .collect()
    };
    let steps = in_span("step");
    assert!(
        steps.iter().any(|l| l["fields"]["message"] == "step done"
            && l["spans"].as_array().unwrap().iter().any(|s| s["name"] == "update" && s["chat_id"] == ADMIN)),
        "steps are logged inside their update:\n{log}"
    );
    assert!(steps.iter().any(|l| l["span"]["flow"] == "create_post"), "the step span names the flow:\n{log}");
    assert!(
        in_span("update").iter().any(|l| l["fields"]["message"] == "update handled" && l["fields"]["ms"].is_u64()),
        "{log}"
    );
    assert!(
        in_span("ai").iter().any(|l| l["fields"]["message"] == "AI call" && l["span"]["action"] == "ai.generate"),
        "the model call is logged in its span:\n{log}"
    );
    assert!(
        in_span("request").iter().any(|l| l["span"]["path"] == "/r/nonsense" && l["fields"]["status"] == 404),
        "{log}"
    );
    let token_secret = TOKEN.split_once(':').unwrap().1;
    assert!(!log.contains(token_secret), "the bot token reached the log");
    assert!(!log.contains(api_key) && !log.contains(&api_key[10..]), "the API key reached the log");
}
