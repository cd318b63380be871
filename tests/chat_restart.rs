//! `postflow chat` fed from a pipe: from /start to a saved draft, with a SIGKILL half-way —
//! the restarted process continues the same conversation from the store.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

mod common;
use common::postflow;

struct Chat {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    seen: String,
}

impl Chat {
    fn start(store: &Path) -> Chat {
        let mut child = postflow(store, &["chat", "--user", "77"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("postflow chat starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Chat { child, stdin, lines, seen: String::new() }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for output containing `needle` (a generous guard against hangs, not a timing test).
    fn expect(&mut self, needle: &str) {
        loop {
            if let Some(at) = self.seen.find(needle) {
                self.seen.drain(..at + needle.len());
                return;
            }
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                Err(_) => panic!("no {needle:?} in the output; got:\n{}", self.seen),
            }
        }
    }
}

#[test]
fn a_killed_chat_resumes_the_conversation_and_saves_the_draft() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data/postflow.redb");

    let mut chat = Chat::start(&store);
    chat.send("/start");
    chat.expect("📝 Նոր գրառում");
    chat.send("📝 Նոր գրառում");
    chat.expect("Ընտրեք գրառման ձևաչափը");
    chat.send("Վաճառող փոստ");
    chat.expect("Գրեք բանալի բառերը");
    // Kill it hard while it waits for the keywords.
    chat.child.kill().unwrap();
    chat.child.wait().unwrap();

    let mut chat = Chat::start(&store);
    chat.expect("resuming: flow `create_post`, step `keywords`");
    chat.expect("Գրեք բանալի բառերը");
    chat.send("կաշվե պայուսակ, նոր հավաքածու, 20% զեղչ");
    chat.expect("Ավելացնե՞լ մանրամասներ");
    chat.send("Գինը՝ 25000 ֏, Երևան, Աբովյան 10");
    chat.expect("Օֆլայն սևագիր");
    chat.expect("[1] ✅ Հաստատել");
    chat.send("1");
    chat.expect("Առանց մեդիայի");
    chat.send("Առանց մեդիայի ⏭");
    // The post as the channel will show it, then the preview's buttons under it.
    chat.expect("կաշվե պայուսակ");
    chat.expect("Այսպես գրառումը կտեսնեն");
    chat.send("💾 Պահել սևագիր");
    chat.expect("Սևագիրը պահպանված է (№1)");
    chat.send(":quit");
    assert!(chat.child.wait().unwrap().success());

    let posts = postflow(&store, &["posts", "list", "--status", "draft"]).output().unwrap();
    let listing = String::from_utf8_lossy(&posts.stdout);
    assert!(posts.status.success());
    assert!(listing.contains("    1  draft       selling"), "{listing}");
}

#[test]
fn a_second_process_on_the_same_store_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.redb");
    let mut first = Chat::start(&store);
    first.expect("postflow chat");
    let second = postflow(&store, &["chat"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already open in another postflow process"), "{stderr}");
    first.send(":quit");
    first.child.wait().unwrap();
}
