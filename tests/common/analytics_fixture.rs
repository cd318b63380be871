//! Generated analytics data: posts, events, clicks, reactions and subscriber counts written to
//! a real store, deterministic for a given size (shared by tests/analytics.rs and
//! benches/analytics_load.rs).

use postflow::engine::post_view::LinkButton;
use postflow::store::{Click, Post, PostStatus, Store};

/// 2026-10-01 00:00 in Yerevan (UTC+4), in Unix seconds.
pub const START: i64 = 1_790_798_400;
pub const HOUR: i64 = 3600;

const FORMATS: [&str; 4] = ["promo", "selling", "info", "collection"];
const TITLES: [&str; 5] = ["Աշնանային զեղչեր", "Նոր տեսականի", "Ձմեռային կոշիկներ", "«Սև ուրբաթ»", "Նվեր քարտեր"];
const KINDS: [&str; 6] = ["post_saved", "post_scheduled", "ai_call", "post_edited", "post_rescheduled", "post_queued"];

/// A small deterministic generator (no dependency on a random crate's algorithm).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// What was written, for the tests' own arithmetic.
pub struct Written {
    pub posts: u64,
    pub events: u64,
    pub clicks: u64,
}

/// Writes `posts` posts over 60 days from [`START`] (three quarters published), `events` events
/// in time order, about 3 clicks per published post, reactions and one member count a day.
pub fn generate(store: &Store, posts: u64, events: u64) -> Written {
    let mut rng = Lcg::new(7);
    let span = 60 * 24 * HOUR;
    let mut published: Vec<(u64, i64, i64)> = Vec::new();
    let turn = store.begin_turn().unwrap();
    for i in 0..posts {
        let created = START + (i as i64 * span) / posts.max(1) as i64;
        let format = FORMATS[(i % 4) as usize];
        let mut post = Post::draft(
            format!("<b>{}</b> №{}\nՄանրամասները՝ կայքում։", TITLES[(i % 5) as usize], i + 1),
            100 + (i % 3) as i64,
            created,
        );
        post.title = format!("{} №{}", TITLES[(i % 5) as usize], i + 1);
        post.format = Some(format.to_string());
        post.language = Some("hy".to_string());
        post.score = Some(5.0 + (i % 5) as f64);
        post.buttons = vec![
            LinkButton { label: "Գնել".into(), url: format!("https://shop.example/p/{}", i + 1) },
            LinkButton { label: "Կատալոգ".into(), url: "https://shop.example/catalog".into() },
        ];
        match i % 8 {
            0 => post.status = PostStatus::Draft,
            1 => {
                post.status = PostStatus::Scheduled;
                post.publish_at = Some(created + span);
            }
            _ => {
                post.status = PostStatus::Published;
                post.publish_at = Some(created + 2 * HOUR);
                post.published_at = Some(created + 2 * HOUR);
                post.message_ids = vec![500 + i as i64];
            }
        }
        let saved = turn.save_post(post).unwrap();
        if saved.status == PostStatus::Published {
            published.push((saved.id, saved.published_at.unwrap_or(created), saved.message_ids[0]));
        }
    }
    for n in 0..events {
        let at = START + (n as i64 * span) / events.max(1) as i64;
        let kind = KINDS[(n % 6) as usize];
        let post = if posts > 0 { Some(1 + rng.below(posts)) } else { None };
        let format = FORMATS[(n % 4) as usize];
        let record = if kind == "ai_call" {
            serde_json::json!({
                "user": 100 + (n % 3) as i64, "format": format, "action": "generate", "model": "gpt-4o-mini",
                "offline": false, "prompt_tokens": 400 + (n % 50), "completion_tokens": 200 + (n % 30),
                "latency_ms": 900 + (n % 400), "outcome": "ok"
            })
        } else {
            serde_json::json!({ "user": 100 + (n % 3) as i64, "post": post, "format": format })
        };
        turn.record_event(kind, at, &record).unwrap();
    }
    let mut clicks = 0;
    for (id, published_at, message) in &published {
        let taps = 1 + rng.below(5);
        for t in 0..taps {
            turn.record_click(Click {
                at: published_at + 600 + t as i64 * 900,
                post: *id,
                button: (t % 2) as u8,
                user: None,
            })
            .unwrap();
            clicks += 1;
        }
        turn.set_reaction(*id, *message, "👍", 1 + rng.below(20) as u32, published_at + HOUR).unwrap();
        if id % 3 == 0 {
            turn.set_reaction(*id, *message, "🔥", 1 + rng.below(9) as u32, published_at + HOUR).unwrap();
        }
    }
    for day in 0..60 {
        // Counted at 09:00 Yerevan each day.
        turn.record_subscribers(START + day * 24 * HOUR + 9 * HOUR, 1500 + (day as u64 * 7) % 23 + day as u64 * 3)
            .unwrap();
    }
    turn.commit().unwrap();
    Written { posts, events, clicks }
}
