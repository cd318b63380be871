//! Micro-benchmarks of the pure core: `step` throughput on the create-post flow, and loading +
//! compiling the shipped configuration.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use postflow::actions::CATALOGUE;
use postflow::config::{self, Bundle};
use postflow::engine::event::{ActionOutcome, Effect, Event, EventKind, Keyboard};
use postflow::engine::session::Session;
use postflow::engine::step_owned;

fn bundle() -> Bundle {
    let loaded = config::load(Path::new(env!("CARGO_MANIFEST_DIR")), CATALOGUE, chrono_tz::Asia::Yerevan);
    loaded.result.unwrap_or_else(|d| panic!("{}", config::render_diagnostics(&d, &loaded.sources)))
}

/// One admin's create-post conversation as a list of "moves", replayed against the engine:
/// a label is pressed on the latest keyboard, other moves are sent as they are.
enum Move {
    Text(&'static str),
    Press(&'static str),
}

const CONVERSATION: &[Move] = &[
    Move::Text("📝 Նոր գրառում"),
    Move::Press("🔥 Վաճառող փոստ"),
    Move::Text("կաշվե պայուսակ, նոր հավաքածու, 20% զեղչ"),
    Move::Text("Գինը՝ 25000 ֏"),
    Move::Press("✏️ Խմբագրել ինքս"),
    Move::Text("<b>Նոր տեքստ</b> պայուսակների մասին, որ հավանեք"),
    Move::Press("✅ Հաստատել"),
    Move::Press("Առանց մեդիայի ⏭"),
    Move::Press("📅 Պլանավորել"),
    Move::Press("▶️"),
    Move::Press("15"),
    Move::Press("18"),
    Move::Press("18:30"),
];

/// Runs the conversation once, driving it by labels; returns every event the engine got
/// (including action results), so the same run can be replayed exactly.
fn record(bundle: &Bundle, now: i64) -> Vec<Event> {
    let mut session = Session::new(1, 1);
    let mut events = Vec::new();
    let mut keyboard: Vec<(String, String)> = Vec::new();
    for mv in CONVERSATION {
        let kind = match mv {
            Move::Text(text) => EventKind::Text { text: (*text).to_string() },
            Move::Press(label) => {
                let data = keyboard.iter().find(|(l, _)| l.contains(label)).map(|(_, d)| d.clone());
                EventKind::Button { data: data.unwrap_or_else(|| panic!("no button {label}")), message_id: Some(1) }
            }
        };
        let mut queue = vec![Event { chat_id: 1, user_id: 1, now, kind }];
        while let Some(event) = queue.pop() {
            let (next, effects) = step_owned(bundle, session, &event);
            events.push(event);
            session = next;
            for effect in effects {
                match effect {
                    Effect::Send { message } | Effect::Edit { message, .. } => {
                        if let Keyboard::Inline(rows) = message.keyboard {
                            keyboard = rows
                                .into_iter()
                                .flatten()
                                .map(|b| (b.label.into_owned(), b.data.to_string()))
                                .collect();
                        }
                    }
                    Effect::RunAction { request_id, name, .. } => {
                        let value = match name.as_str() {
                            "ai.generate" => {
                                serde_json::json!({ "text": "<b>Կաշվե պայուսակ</b>\nՆոր հավաքածու", "offline": true, "words": 4 })
                            }
                            _ => serde_json::json!({ "id": 1, "status": "draft" }),
                        };
                        queue.push(Event {
                            chat_id: 1,
                            user_id: 1,
                            now,
                            kind: EventKind::ActionResult { request_id, outcome: ActionOutcome::Ok { value } },
                        });
                    }
                    _ => {}
                }
            }
        }
    }
    // The last press saves the scheduled draft and ends the flow.
    assert!(session.is_idle(), "the conversation stopped at {:?}", session.current());
    events
}

fn bench_step(c: &mut Criterion) {
    let bundle = bundle();
    let now = 1_795_672_800;
    let events = record(&bundle, now);
    assert!(events.len() >= 15, "the conversation did not run through ({} events)", events.len());
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(events.len() as u64));
    // The timed loop replays the recorded events: nothing but `step` runs.
    group.bench_function("create_post_conversation", |b| {
        b.iter(|| {
            let mut session = Session::new(1, 1);
            for event in &events {
                let (next, effects) = step_owned(&bundle, session, event);
                session = next;
                black_box(effects);
            }
            session
        })
    });
    group.finish();
}

fn bench_load(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    c.bench_function("config/load_and_compile_shipped", |b| {
        b.iter(|| black_box(config::load(dir, CATALOGUE, chrono_tz::Asia::Yerevan).result.is_ok()))
    });
}

criterion_group!(benches, bench_step, bench_load);
criterion_main!(benches);
