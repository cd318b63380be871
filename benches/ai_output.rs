//! The AI layer's own work around a model call: turning 1,000 realistic Armenian answers
//! (Markdown with headings, bold, lists, links, emoji, a preamble now and then, stray HTML) into
//! sendable Telegram HTML, and rendering the Jinja prompts of every shipped format.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use postflow::actions::CATALOGUE;
use postflow::ai::Ai;
use postflow::ai::output::sendable;
use serde_json::json;

const OPENERS: &[&str] = &["Ահա ձեր գրառումը՝\n\n", "", "", "Here is your post:\n\n", ""];
const TITLES: &[&str] = &[
    "## 🔥 Նոր հավաքածու արդեն խանութում",
    "**😍 Ձեր նոր սիրելին՝ կաշվե պայուսակ** 💎",
    "# Ձմեռային զեղչեր՝ մինչև 30%",
    "**Ամառային զգեստներ, սանդալներ, արևային ակնոցներ** ☀️",
];
const BODIES: &[&str] = &[
    "Հենց այն, ինչ փնտրում էիք։ Գեղեցիկ տեսք, ժամանակակից ոճ և *հարմարավետություն*՝ մեկ ընտրության մեջ։",
    "Այս առաջարկը նրանց համար է, ովքեր գնահատում են որակը և ուշադրություն են դարձնում մանրուքներին։",
    "Գինը՝ <b>25000 ֏</b> & անվճար առաքում Երևանում 🚚",
    "Սա այն գնումն է, որից հաստատ չեք հիասթափվի։ ~~35000 ֏~~ **25000 ֏**",
];
const LISTS: &[&str] = &[
    "- ✔️ բնական կաշի\n- ✔️ երեք գույն\n- ✔️ երաշխիք 1 տարի",
    "1. Ընտրեք մոդելը\n2. Գրեք մեզ\n3. Ստացեք առաքումով",
    "",
];
const ENDINGS: &[&str] = &[
    "Գրե՛ք մեզ 📩 [@time_2_shopping](https://t.me/time_2_shopping)\n\n#ShoppingTime #time2shopping #գնումներ",
    "> Առաջարկը գործում է մինչև ամսվա վերջ\n\n#զեղչ #նորույթ",
    "**Ցանկանո՞ւմ եք այն ձերը դարձնել։** 👇",
];

fn answers() -> Vec<String> {
    let mut seed: u64 = 0x5eed;
    let mut pick = |n: usize| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % n
    };
    (0..1000)
        .map(|_| {
            let parts = [
                OPENERS[pick(OPENERS.len())],
                TITLES[pick(TITLES.len())],
                "\n\n",
                BODIES[pick(BODIES.len())],
                " ",
                BODIES[pick(BODIES.len())],
                "\n\n",
                LISTS[pick(LISTS.len())],
                "\n\n",
                ENDINGS[pick(ENDINGS.len())],
            ];
            parts.concat()
        })
        .collect()
}

fn convert(c: &mut Criterion) {
    let answers = answers();
    let bytes: usize = answers.iter().map(String::len).sum();
    let mut group = c.benchmark_group("ai_output");
    group.throughput(Throughput::Elements(answers.len() as u64));
    group.bench_function("sendable, 1000 Armenian answers", |b| {
        b.iter(|| {
            for answer in &answers {
                black_box(sendable(black_box(answer)));
            }
        })
    });
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("sendable, bytes", |b| {
        b.iter(|| {
            for answer in &answers {
                black_box(sendable(black_box(answer)));
            }
        })
    });
    group.finish();
}

/// Prompt rendering: the system and generate prompts of each format (what every `ai.generate`
/// renders before it calls the model), and the whole offline `ai.generate` (system, user and
/// offline templates, cleaning, accounting).
fn prompts(c: &mut Criterion) {
    let loaded = postflow::config::load(Path::new(env!("CARGO_MANIFEST_DIR")), CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle = loaded.result.unwrap_or_else(|_| panic!("the shipped configuration loads"));
    let inputs: Vec<(String, String, minijinja::Value)> = bundle
        .formats
        .iter()
        .map(|format| {
            let inputs = json!({
                "format": format,
                "keywords": ["կաշվե պայուսակ", "նոր հավաքածու", "20% զեղչ"],
                "keywords_text": "կաշվե պայուսակ, նոր հավաքածու, 20% զեղչ",
                "details": "Գինը՝ 25000 ֏, առաքումն անվճար է Երևանում",
                "language": "hy",
                "limit": format.max_chars,
            });
            (
                format.prompts.system.clone(),
                format.prompts.generate.clone(),
                minijinja::Value::from(minijinja::value::Serde(&inputs)),
            )
        })
        .collect();
    let mut group = c.benchmark_group("prompts");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("system + generate prompt, each of 4 formats", |b| {
        b.iter(|| {
            for (system, generate, ctx) in &inputs {
                black_box(bundle.templates.get_template(system).unwrap().render(ctx).unwrap());
                black_box(bundle.templates.get_template(generate).unwrap().render(ctx).unwrap());
            }
        })
    });
    let ai = Ai::offline();
    let args: Vec<serde_json::Value> = bundle
        .formats
        .iter()
        .map(|f| json!({ "format": f.id, "keywords": "կաշվե պայուսակ, նոր հավաքածու, 20% զեղչ", "details": "Գինը՝ 25000 ֏" }))
        .collect();
    group.bench_function("offline ai.generate, each of 4 formats", |b| {
        b.iter(|| {
            for args in &args {
                black_box(ai.run_blocking(&bundle, "ai.generate", args).result.unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, convert, prompts);
criterion_main!(benches);
