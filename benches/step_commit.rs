//! End-to-end latency of one event through the driver: engine step + durable redb commit
//! (+ inline actions), measured per event over many create-post conversations. Prints p50/p99.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use postflow::actions::CATALOGUE;
use postflow::config;
use postflow::console::Screen;
use postflow::driver::Driver;
use postflow::engine::event::{Event, EventKind};
use postflow::store::Store;

fn main() {
    let loaded = config::load(Path::new(env!("CARGO_MANIFEST_DIR")), CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle =
        Arc::new(loaded.result.unwrap_or_else(|d| panic!("{}", config::render_diagnostics(&d, &loaded.sources))));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("bench.redb")).expect("store");
    let driver = Driver::new(bundle, store);
    let conversations: usize = std::env::var("CONVERSATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let moves: [(&str, bool); 8] = [
        ("📝 Նոր գրառում", false),
        ("🔥 Վաճառող փոստ", true),
        ("կաշվե պայուսակ, նոր հավաքածու", false),
        ("Բաց թողնել ⏭", true),
        ("✅ Հաստատել", true),
        ("Առանց մեդիայի ⏭", true),
        ("💾 Պահել սևագիր", true),
        ("/start", false),
    ];
    let mut latencies = Vec::with_capacity(conversations * moves.len());
    let now = 1_795_672_800;
    for n in 0..conversations {
        let chat = 1000 + (n % 50) as i64;
        let mut screen = Screen::default();
        for (text, press) in moves {
            let kind = if press {
                let (id, data) = screen.find_button(text, false).unwrap_or_else(|| panic!("no button {text}"));
                EventKind::Button { data, message_id: Some(id) }
            } else if let Some(command) = text.strip_prefix('/') {
                EventKind::Command { name: command.into(), args: String::new() }
            } else {
                EventKind::Text { text: text.into() }
            };
            let started = Instant::now();
            let effects = driver.handle(Event { chat_id: chat, user_id: chat, now, kind }).expect("handle").effects;
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            screen.apply(effects);
        }
    }
    report("step+commit", &mut latencies, conversations);

    // For reference: a bare durable redb commit of one session on this machine.
    let session = driver.session(1000, 1000).expect("session");
    let mut bare = Vec::with_capacity(latencies.len());
    for _ in 0..latencies.len() {
        let started = Instant::now();
        driver.store.save_session(&session).expect("save");
        bare.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    report("bare redb commit (reference)", &mut bare, conversations);
}

fn report(what: &str, latencies: &mut [f64], conversations: usize) {
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
    println!(
        "{what}: {} events over {conversations} conversations: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms, mean {:.3} ms",
        latencies.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies[latencies.len() - 1],
        mean
    );
}
