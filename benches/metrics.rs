//! The cost of metrics: recording one sample on the hot paths, rendering `/metrics`, and a
//! whole scrape over HTTP from the bot's own server, with every series postflow keeps filled in.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use postflow::config::live::LiveBundle;
use postflow::http::HealthState;
use postflow::scheduler::clock::SystemClock;
use postflow::store::Store;
use postflow::telemetry;
use postflow::vitals::Vitals;

/// Every series a busy bot has: each update kind, each AI action with each outcome, every
/// publish, reload and click outcome, and the three histograms with samples in every bucket.
fn fill() {
    for kind in ["message", "press", "reaction_count", "other"] {
        telemetry::update_received(kind);
    }
    for action in ["ai.generate", "ai.improve", "ai.translate", "ai.analyze", "ai.hashtags"] {
        for outcome in ["ok", "timeout", "rate_limited", "unavailable", "unauthorized", "bad_answer"] {
            telemetry::ai_request(action, outcome, 400, 300, 1800);
        }
    }
    for outcome in ["published", "failed", "unsure"] {
        telemetry::published(outcome);
    }
    for outcome in ["applied", "unchanged", "rejected"] {
        telemetry::reloaded(outcome);
    }
    for outcome in ["counted", "not_counted", "not_found"] {
        telemetry::click(outcome);
    }
    telemetry::queue_length(12);
    for i in 0..10_000u32 {
        telemetry::step_finished(Duration::from_micros(u64::from(i % 3000) * 10));
        telemetry::lateness(i64::from(i % 4000));
    }
}

fn bench(c: &mut Criterion) {
    let handle = telemetry::install().expect("the recorder installs");
    fill();
    let rendered = handle.render();
    println!("/metrics body: {} bytes, {} lines", rendered.len(), rendered.lines().count());

    c.bench_function("record one update and one step", |b| {
        b.iter(|| {
            telemetry::update_received(black_box("message"));
            telemetry::step_finished(black_box(Duration::from_micros(1200)));
        })
    });
    c.bench_function("render /metrics", |b| b.iter(|| black_box(handle.render())));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("postflow.redb")).unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = postflow::analytics::load_config(config, postflow::actions::CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle = Arc::new(loaded.result.unwrap_or_else(|_| panic!("the shipped configuration loads")));
    let state = HealthState {
        vitals: Vitals::new(Arc::new(SystemClock)),
        store,
        live: LiveBundle::new(bundle),
        metrics: Some(handle.clone()),
    };
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    rt.spawn(postflow::http::serve(listener, postflow::http::router(None, Some(state), None)));
    let client = reqwest::Client::new();
    c.bench_function("scrape /metrics over HTTP", |b| {
        b.iter(|| {
            rt.block_on(async {
                let body = client.get(&url).send().await.unwrap().text().await.unwrap();
                black_box(body.len())
            })
        })
    });
    let readyz = url.replace("/metrics", "/readyz");
    c.bench_function("GET /readyz over HTTP", |b| {
        b.iter(|| rt.block_on(async { black_box(client.get(&readyz).send().await.unwrap().status()) }))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
