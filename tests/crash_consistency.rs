//! Crash consistency: `postflow chat` is killed with SIGKILL at many moments while it works
//! through a script that saves drafts; after each kill the store opens, the session is valid for
//! the configuration, and every recorded `draft.save` result points at exactly one stored post.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

mod common;
use common::postflow;

use postflow::actions::CATALOGUE;
use postflow::config;
use postflow::store::Store;

const CYCLE: &[&str] = &[
    "📝 Նոր գրառում",
    "Վաճառող փոստ",
    "կաշվե պայուսակ, նոր հավաքածու",
    "Բաց թողնել ⏭",
    "✅ Հաստատել",
    "Առանց մեդիայի ⏭",
    "💾 Պահել սևագիր",
];

fn check_store(path: &Path, chat: i64) -> usize {
    let loaded = config::load(Path::new(env!("CARGO_MANIFEST_DIR")), CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle = loaded.result.unwrap_or_else(|d| panic!("{}", config::render_diagnostics(&d, &loaded.sources)));
    let store = Store::open(path).expect("the store opens after a kill");
    let posts = store.posts().unwrap();
    let ids: BTreeSet<u64> = posts.iter().map(|p| p.id).collect();
    assert_eq!(ids.len(), posts.len(), "post ids are unique");
    if let Some(session) = store.load_session(chat).unwrap() {
        for frame in &session.stack {
            assert!(bundle.step(&frame.flow, &frame.step).is_some(), "a session frame points nowhere: {frame:?}");
        }
        // Every draft.save result in the action log names a stored post, and no post is named twice.
        let mut named = BTreeSet::new();
        for request in 0..session.next_request {
            if let Some(result) = store.action_result(chat, request).unwrap()
                && let Some(id) = result.get("ok").and_then(|ok| ok.get("id")).and_then(|id| id.as_u64())
                && result["ok"].get("status").is_some()
            {
                assert!(ids.contains(&id), "the log names post {id}, which is not stored");
                assert!(named.insert(id), "two requests saved the same post {id}");
            }
        }
        assert_eq!(named.len(), posts.len(), "every stored post was saved by exactly one recorded request");
    }
    posts.len()
}

#[test]
fn killing_chat_at_any_moment_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("crash.redb");
    let mut script = String::new();
    for _ in 0..4 {
        for line in CYCLE {
            script.push_str(line);
            script.push('\n');
        }
    }
    let mut last_posts = 0;
    for round in 0..12u64 {
        let mut child = postflow(&store, &["chat", "--user", "5"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Start each round from a known place, then feed the whole script at once.
        let _ = stdin.write_all(b"/cancel\n");
        let _ = stdin.write_all(script.as_bytes());
        let _ = stdin.flush();
        std::thread::sleep(Duration::from_millis(3 + (round * 37) % 120));
        let _ = child.kill();
        let _ = child.wait();
        let posts = check_store(&store, 5);
        assert!(posts >= last_posts, "posts never disappear");
        eprintln!("round {round}: {posts} posts");
        last_posts = posts;
    }
}
