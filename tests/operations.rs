//! Operations: the health and metrics endpoints of a running bot and of a bot whose parts fail.

mod common;

use std::sync::Arc;

use common::bot::{Bot, Setup, load_bundle, shipped_config};
use postflow::config::live::LiveBundle;
use postflow::http::HealthState;
use postflow::scheduler::clock::ManualClock;
use postflow::store::Store;
use postflow::vitals::Vitals;

const ADMIN: i64 = 1001;

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

async fn fetch(url: &str) -> Answer {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    Answer { status, content_type, body: response.text().await.unwrap() }
}

/// The readiness checks as (name, ok, detail).
fn checks(answer: &Answer) -> Vec<(String, bool, String)> {
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["name"].as_str().unwrap().to_string(), c["ok"].as_bool().unwrap(), c["detail"].as_str().unwrap().into())
        })
        .collect()
}

fn failing(answer: &Answer) -> Vec<String> {
    checks(answer).into_iter().filter(|(_, ok, _)| !ok).map(|(name, _, detail)| format!("{name}: {detail}")).collect()
}

/// The value of one sample line of a Prometheus text exposition.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn a_running_bot_answers_health_readiness_and_metrics_and_says_what_fails() {
    let bot = Bot::start(Setup { serve_http: true, ..Setup::default() });
    let base = bot.http_base.clone().unwrap();
    let get = |path: &str| bot.rt.block_on(fetch(&format!("{base}{path}")));

    let alive = get("/healthz");
    assert_eq!((alive.status, alive.body.as_str()), (200, "ok\n"));
    let ready = get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    let names: Vec<String> = checks(&ready).into_iter().map(|(name, ok, _)| format!("{name}:{ok}")).collect();
    assert_eq!(names, ["store:true", "telegram:true", "scheduler:true", "config:true"]);
    assert!(ready.body.contains("(schema 4)"), "{}", ready.body);

    bot.say(ADMIN, "/start");
    let metrics = get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.content_type.starts_with("text/plain; version=0.0.4"), "{}", metrics.content_type);
    assert!(sample(&metrics.body, "postflow_updates_total{kind=\"message\"}").unwrap() >= 1.0, "{}", metrics.body);
    assert!(metrics.body.contains("# TYPE postflow_step_duration_seconds histogram"), "{}", metrics.body);
    assert!(sample(&metrics.body, "postflow_step_duration_seconds_count").unwrap() >= 1.0);
    assert!(sample(&metrics.body, "postflow_scheduler_queue_length").is_some(), "{}", metrics.body);
    let version = format!("postflow_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(&metrics.body, &version), Some(1.0));

    // `postflow health`, as Docker's HEALTHCHECK runs it.
    let health = |ready: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_postflow"));
        command.arg("health").env("HTTP_ADDR", base.trim_start_matches("http://"));
        if ready {
            command.arg("--ready");
        }
        let output = command.output().unwrap();
        (output.status.success(), String::from_utf8(output.stdout).unwrap())
    };
    assert_eq!(health(false), (true, "ok\n".to_string()));
    let (ready, said) = health(true);
    assert!(ready && said.starts_with("{\"ready\":true"), "{said}");

    // Nothing heard from Telegram for longer than readiness allows (its probe runs each minute).
    bot.clock.advance(postflow::vitals::TELEGRAM_STALE_SECS + 20);
    bot.store().wake_scheduler();
    bot.wait_for("the scheduler to go round at the new time", || {
        let answer = get("/readyz");
        failing(&answer).iter().all(|f| !f.starts_with("scheduler"))
    });
    let stale = get("/readyz");
    assert_eq!(stale.status, 503);
    assert_eq!(failing(&stale), ["telegram: no answer from Telegram for 200 s"]);
    // An update is an answer.
    bot.say(ADMIN, "/start");
    assert_eq!(get("/readyz").status, 200);

    // The store file deleted under the running bot (a lost volume): not ready, and why.
    std::fs::remove_file(&bot.store_path).unwrap();
    let lost = get("/readyz");
    assert_eq!(lost.status, 503);
    let failures = failing(&lost);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with("store: the store file ") && failures[0].contains("is gone"), "{failures:?}");
    assert_eq!(get("/healthz").status, 200, "alive all the same");
    assert!(health(false).0);
    assert!(!health(true).0, "`health --ready` fails with /readyz");
}

#[test]
fn readiness_follows_the_scheduler_loop_and_a_stopped_one_is_not_ready() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("postflow.redb")).unwrap();
    let clock = Arc::new(ManualClock::at(1_795_672_800));
    let vitals = Vitals::new(clock.clone());
    vitals.telegram_ok();
    let state = HealthState {
        vitals: vitals.clone(),
        store,
        live: LiveBundle::new(load_bundle(shipped_config())),
        metrics: None,
    };
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(postflow::http::serve(listener, postflow::http::router(None, Some(state), None)));
    let get = |path: &str| rt.block_on(fetch(&format!("{base}{path}")));

    assert_eq!(failing(&get("/readyz")), ["scheduler: the scheduler has not started"]);
    let (started, start) = std::sync::mpsc::channel();
    let (_keep_running, running) = tokio::sync::oneshot::channel::<()>();
    let scheduler = {
        let vitals = vitals.clone();
        rt.spawn(async move {
            let beat = vitals.scheduler_started();
            started.send(()).unwrap();
            let _ = running.await;
            beat.beat();
        })
    };
    start.recv().unwrap();
    let ready = get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(checks(&ready).contains(&("scheduler".into(), true, "last round 0 s ago".into())));

    // A loop that stops going round (stuck in a call) is not ready after a while.
    clock.advance(postflow::vitals::SCHEDULER_STALE_SECS + 1);
    vitals.telegram_ok();
    assert_eq!(failing(&get("/readyz")), ["scheduler: the scheduler's loop has not gone round for 151 s (stuck?)"]);

    // A loop that ended (a panic, an abort) is stopped.
    scheduler.abort();
    let _ = rt.block_on(scheduler);
    let stopped = get("/readyz");
    assert_eq!(stopped.status, 503);
    assert_eq!(failing(&stopped), ["scheduler: the scheduler has stopped: nothing will be published"]);
    assert_eq!(get("/healthz").status, 200);
    let metrics = get("/metrics");
    assert_eq!((metrics.status, metrics.body.as_str()), (503, "this process keeps no metrics\n"));
}

// ---------------------------------------------------------------------------------------------
// Backup, restore, dump and load.

use postflow::store::backup::{self, Overwrite};
use postflow::store::{Post, PostStatus};

/// Posts, their index and their `post_created` events agree: the marks of one committed state.
fn consistent_state(store: &Store) -> usize {
    let posts = store.posts().unwrap();
    let indexed: u64 = store.status_counts().unwrap().iter().map(|(_, n)| n).sum();
    let created = store.events().unwrap().iter().filter(|e| e["kind"] == "post_created").count();
    assert_eq!((indexed as usize, created), (posts.len(), posts.len()), "a torn copy");
    let mut ids: Vec<u64> = posts.iter().map(|p| p.id).collect();
    ids.sort_unstable();
    assert!(ids.iter().copied().eq(1..=ids.len() as u64), "posts in order of commit: {ids:?}");
    posts.len()
}

#[test]
fn a_backup_taken_during_writes_is_one_committed_state_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("postflow.redb")).unwrap().with_event_segment_rows(64);
    let writing = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..400 {
                let turn = store.begin_turn().unwrap();
                let post = turn.save_post(Post::draft(format!("Գրառում {i}"), ADMIN, 1_795_672_800 + i)).unwrap();
                turn.record_event("post_created", 1_795_672_800 + i, &serde_json::json!({ "post": post.id })).unwrap();
                turn.commit().unwrap();
            }
        })
    };
    let mut taken = Vec::new();
    while !writing.is_finished() || taken.is_empty() {
        let file = dir.path().join(format!("backup-{}.redb", taken.len()));
        let summary = store.backup_to(&file).unwrap();
        taken.push((file, summary));
    }
    writing.join().unwrap();
    let mut sizes = Vec::new();
    for (file, summary) in &taken {
        let copy = Store::open(file).unwrap();
        let posts = consistent_state(&copy);
        assert!(summary.describe().starts_with(&format!("schema 4, {posts} posts, {posts} events")), "{summary:?}");
        sizes.push(posts);
    }
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    assert!(store.backup_to(&taken[0].0).unwrap_err().to_string().contains("exists already"));

    // Restored as a store of its own: the same state, the segments included.
    let (last, _) = taken.last().unwrap();
    let restored_path = dir.path().join("restored").join("postflow.redb");
    let restored = backup::restore(last, &restored_path, Overwrite::Refuse, 1).unwrap();
    assert_eq!(restored.kept_aside, None);
    let again = backup::restore(last, &restored_path, Overwrite::Refuse, 2).unwrap_err().to_string();
    assert!(again.contains("exists and the restore would replace it; run again with --force"), "{again}");
    let replaced = backup::restore(&taken[0].0, &restored_path, Overwrite::KeepAside, 3).unwrap();
    let aside = replaced.kept_aside.unwrap();
    assert!(aside.ends_with("postflow.redb.before-restore-3"), "{}", aside.display());
    assert_eq!(consistent_state(&Store::open(&aside).unwrap()), *sizes.last().unwrap());
    let now_restored = Store::open(&restored_path).unwrap();
    assert_eq!(consistent_state(&now_restored), sizes[0]);
    // A damaged store is what a restore is for; earlier copies set aside are never overwritten.
    let damaged = dir.path().join("damaged.redb");
    std::fs::write(&damaged, b"not a redb file at all").unwrap();
    let refused = backup::restore(last, &damaged, Overwrite::Refuse, 5).unwrap_err().to_string();
    assert!(refused.contains("--force"), "{refused}");
    let first = backup::restore(last, &damaged, Overwrite::KeepAside, 5).unwrap().kept_aside.unwrap();
    let second = backup::restore(last, &damaged, Overwrite::KeepAside, 5).unwrap().kept_aside.unwrap();
    assert!(first.ends_with("damaged.redb.before-restore-5") && second.ends_with("damaged.redb.before-restore-5-2"));
    assert_eq!(std::fs::read(&first).unwrap(), b"not a redb file at all");
    assert_eq!(consistent_state(&Store::open(&damaged).unwrap()), *sizes.last().unwrap());
    // A store in use is not replaced.
    let locked = backup::restore(last, &restored_path, Overwrite::KeepAside, 4).unwrap_err().to_string();
    assert!(locked.contains("already open in another postflow process"), "{locked}");
}

#[test]
fn dump_and_load_move_every_table_and_the_loaded_store_rebuilds_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source.redb");
    {
        let store = Store::open(&source_path).unwrap().with_event_segment_rows(16);
        let turn = store.begin_turn().unwrap();
        let mut post = Post::draft("<b>Նոր</b> պայուսակ & «զեղչ»", ADMIN, 1_795_672_800);
        post.status = PostStatus::Scheduled;
        post.publish_at = Some(1_795_700_000);
        let post = turn.save_post(post).unwrap();
        for i in 0..40 {
            turn.record_event("ai_call", 1_795_672_800 + i, &serde_json::json!({ "post": post.id, "tokens": i }))
                .unwrap();
        }
        turn.commit().unwrap();
        store.click_secret().unwrap();
        store.set_channel_link("https://t.me/time_2_shopping").unwrap();
        assert_eq!(store.event_segment_count().unwrap(), 2);
    }
    let bin = env!("CARGO_BIN_EXE_postflow");
    let run = |args: &[&str], store: &std::path::Path| {
        let output = std::process::Command::new(bin)
            .args(args)
            .env("DATABASE_URL", store)
            .env("CONFIG_DIR", shipped_config())
            .current_dir(dir.path())
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
    };
    let (ok, _, said) = run(&["dump", "--format", "json", "--out", "dump.json"], &source_path);
    assert!(ok, "{said}");
    assert!(said.contains("dumped") && said.contains("1 posts, 40 events"), "{said}");
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("dump.json")).unwrap()).unwrap();
    assert_eq!((first["postflow_dump"].as_u64(), first["schema"].as_u64()), (Some(1), Some(4)));
    assert_eq!(first["tables"]["posts"][0]["value"]["text"], "<b>Նոր</b> պայուսակ & «զեղչ»", "records as JSON");
    assert!(first["tables"]["secrets"][0]["value"].is_string(), "keys as base64");
    assert!(first["tables"].get("event_segments").is_none(), "derived tables are left out");

    let target = dir.path().join("moved").join("postflow.redb");
    let (ok, said, err) = run(&["load", "dump.json"], &target);
    assert!(ok, "{err}");
    assert!(said.contains("1 posts, 40 events") && said.contains("the store opens: schema 4"), "{said}");
    let (ok, _, err) = run(&["load", "dump.json"], &target);
    assert!(!ok && err.contains("--force"), "{err}");
    let (ok, said, err) = run(&["load", "dump.json", "--force"], &target);
    assert!(ok && said.contains("the store it replaced is kept as"), "{said}{err}");
    let (ok, dumped, err) = run(&["dump"], &target);
    assert!(ok, "{err}");
    let second: serde_json::Value = serde_json::from_str(&dumped).unwrap();
    assert_eq!(second["tables"], first["tables"], "the same data, table by table");
    let loaded = Store::open(&target).unwrap().with_event_segment_rows(16);
    assert_eq!(loaded.schema_version().unwrap(), 4);
    assert_eq!(loaded.due(1_795_700_000, 10).unwrap(), store_due(&source_path));
    assert_eq!(loaded.channel_link().unwrap().as_deref(), Some("https://t.me/time_2_shopping"));

    // A dump from a newer postflow, or one with a table this one does not know, changes nothing.
    let mut newer = first.clone();
    newer["schema"] = serde_json::json!(99);
    let refused = backup::load(&newer, &dir.path().join("n.redb"), Overwrite::Refuse, 1).unwrap_err().to_string();
    assert!(refused.contains("schema version 99, newer than this postflow supports (4)"), "{refused}");
    let mut foreign = first.clone();
    foreign["tables"]["orders"] = serde_json::json!([]);
    let refused = backup::load(&foreign, &dir.path().join("n.redb"), Overwrite::Refuse, 1).unwrap_err().to_string();
    assert!(refused.contains("tables this postflow does not know: orders"), "{refused}");
    let mut broken = first.clone();
    broken["tables"]["posts_due"][0]["key"] = serde_json::json!("soon");
    let refused = backup::load(&broken, &dir.path().join("n.redb"), Overwrite::Refuse, 1).unwrap_err().to_string();
    assert!(refused.contains("posts_due row 1 does not fit"), "{refused}");
    assert!(!dir.path().join("n.redb").exists());
}

fn store_due(path: &std::path::Path) -> Vec<(i64, u64)> {
    Store::open(path).unwrap().due(1_795_700_000, 10).unwrap()
}

#[test]
fn postflow_backup_asks_the_running_bot_for_a_copy_of_the_store_it_holds() {
    let mut bot = Bot::start(Setup { serve_http: true, ..Setup::default() });
    bot.say(ADMIN, "/start");
    let dir = tempfile::tempdir().unwrap();
    let addr = bot.http_base.clone().unwrap().trim_start_matches("http://").to_string();
    let backup_cli = |token: &str, file: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_postflow"))
            .args(["backup", file])
            .env("DATABASE_URL", &bot.store_path)
            .env("HTTP_ADDR", &addr)
            .env("BOT_TOKEN", token)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8(output.stdout).unwrap() + &String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (ok, said) = backup_cli("123:wrong", "copy.redb");
    assert!(!ok && said.contains("wrong admin key"), "{said}");
    let (ok, said) = backup_cli(common::fake_telegram::TOKEN, "copy.redb");
    assert!(ok, "{said}");
    assert!(said.contains("(in use by the running bot)") && said.contains("schema 4"), "{said}");
    let (ok, said) = backup_cli(common::fake_telegram::TOKEN, "copy.redb");
    assert!(!ok && said.contains("exists already"), "{said}");
    bot.shutdown().unwrap();
    let copy = Store::open(&dir.path().join("copy.redb")).unwrap();
    assert_eq!(copy.users().unwrap().iter().map(|u| u.id).collect::<Vec<_>>(), [ADMIN]);
    assert!(copy.load_session(ADMIN).unwrap().is_some(), "the conversation is in the copy");
}

// ---------------------------------------------------------------------------------------------
// Migration from a store an older postflow wrote.

const SCHEMA_2_FIXTURE: &str = "tests/fixtures/store-schema2.redb";

#[test]
fn a_schema_2_store_is_copied_aside_then_migrated_and_keeps_its_posts_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postflow.redb");
    std::fs::copy(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_2_FIXTURE), &path).unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 4);
    let posts = store.posts().unwrap();
    assert_eq!(posts.len(), 2);
    let published = posts.iter().find(|p| p.status == PostStatus::Published).unwrap();
    assert_eq!(published.text, "<b>Աշնանային</b> զեղչեր");
    // Schema 3 indexed posts by their channel messages: reactions to old posts find them.
    assert_eq!(store.post_of_message(501).unwrap(), Some(published.id));
    assert_eq!(store.post_of_message(502).unwrap(), Some(published.id));
    assert_eq!(store.events().unwrap().len(), 3);
    assert_eq!(store.due(i64::MAX, 10).unwrap().len(), 1);

    // The store as it was is kept beside it, whole, still at schema 2.
    let copies: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("postflow.redb.schema2-backup-"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let (document, summary) = backup::dump_file(&copies[0], 0).unwrap();
    assert_eq!(summary.schema, 2);
    assert_eq!(document["tables"]["posts"].as_array().unwrap().len(), 2);
    assert!(document["tables"].get("posts_by_message").is_none(), "as schema 2 had it");
    drop(store);
    // Opening again migrates nothing and copies nothing.
    Store::open(&path).unwrap();
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 2);
}

/// Writes the schema 2 fixture as postflow 0.1 with schema 2 laid it out (run with --ignored
/// to write it again).
#[test]
#[ignore]
fn write_the_schema_2_fixture() {
    use redb::{Database, TableDefinition};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_2_FIXTURE);
    let _ = std::fs::remove_file(&path);
    let db = Database::create(&path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(TableDefinition::<&str, u64>::new("meta")).unwrap().insert("schema_version", 2).unwrap();
    let published = serde_json::json!({
        "id": 1, "status": "published", "format": "selling", "text": "<b>Աշնանային</b> զեղչեր",
        "media": null, "created_by": 1001, "created_at": 1_790_000_000, "updated_at": 1_790_000_100,
        "published_at": 1_790_000_100, "message_ids": [501, 502]
    });
    let scheduled = serde_json::json!({
        "id": 2, "status": "scheduled", "format": "promo", "text": "Շուտով", "media": null,
        "created_by": 1002, "created_at": 1_790_000_200, "updated_at": 1_790_000_300,
        "publish_at": 1_800_000_000
    });
    {
        let mut posts = txn.open_table(TableDefinition::<u64, &[u8]>::new("posts")).unwrap();
        posts.insert(1, serde_json::to_vec(&published).unwrap().as_slice()).unwrap();
        posts.insert(2, serde_json::to_vec(&scheduled).unwrap().as_slice()).unwrap();
        let mut by_status = txn.open_table(TableDefinition::<(u8, u64), ()>::new("posts_by_status")).unwrap();
        by_status.insert((3, 1), ()).unwrap();
        by_status.insert((1, 2), ()).unwrap();
        let mut by_creator = txn.open_table(TableDefinition::<(i64, u64), ()>::new("posts_by_creator")).unwrap();
        by_creator.insert((1001, 1), ()).unwrap();
        by_creator.insert((1002, 2), ()).unwrap();
        txn.open_table(TableDefinition::<(i64, u64), ()>::new("posts_due"))
            .unwrap()
            .insert((1_800_000_000, 2), ())
            .unwrap();
        let mut events = txn.open_table(TableDefinition::<u64, &[u8]>::new("events")).unwrap();
        for (seq, event) in [
            serde_json::json!({ "kind": "post_generated", "at": 1_790_000_000, "post": 1, "user": 1001 }),
            serde_json::json!({ "kind": "post_published", "at": 1_790_000_100, "post": 1 }),
            serde_json::json!({ "kind": "post_scheduled", "at": 1_790_000_300, "post": 2, "user": 1002 }),
        ]
        .iter()
        .enumerate()
        {
            events.insert(seq as u64, serde_json::to_vec(event).unwrap().as_slice()).unwrap();
        }
        let user = serde_json::json!({ "id": 1001, "username": "anna", "name": "Աննա", "last_active": 1_790_000_000 });
        txn.open_table(TableDefinition::<i64, &[u8]>::new("users"))
            .unwrap()
            .insert(1001, serde_json::to_vec(&user).unwrap().as_slice())
            .unwrap();
        txn.open_table(TableDefinition::<i64, (u64, i64)>::new("seen_updates"))
            .unwrap()
            .insert(1001, (77, 1_790_000_000))
            .unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    let mut db = Database::open(&path).unwrap();
    db.compact().unwrap();
}
