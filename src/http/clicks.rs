//! CTA click tracking: the short signed tokens that name a post's button in
//! `PUBLIC_BASE_URL/r/<token>` or in a deep link into the bot (`t.me/<bot>?start=c_<token>`), the
//! once-per-window rule for repeated clicks, and the redirect route that records a click and
//! sends the reader on to the real address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::settings::ClickTracking;
use crate::store::{Click, Post, PostStatus, Store};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the signature kept in a token: 72 bits, beyond guessing at any request rate.
const MAC_BYTES: usize = 9;
/// Payload: post id (8 bytes, big-endian) and button index (1 byte).
const PAYLOAD_BYTES: usize = 9;
/// Clicks from one client on one button within this window count once.
pub const REPEAT_WINDOW_MS: i64 = 30_000;
/// Clients remembered for the window; a flood beyond this is forgotten at once.
const MAX_REMEMBERED: usize = 100_000;

/// What a deep link's start parameter begins with when it names a button (`c_<token>`); the
/// token's URL-safe base64 is what Telegram allows there (`A-Z a-z 0-9 _ -`, up to 64).
pub const DEEP_LINK_PREFIX: &str = "c_";

/// The token a deep link's start parameter carries, if it is a click's.
pub fn deep_link_token(start_parameter: &str) -> Option<&str> {
    start_parameter.trim().strip_prefix(DEEP_LINK_PREFIX)
}

/// Makes and checks tracked links, and remembers recent clicks for the repeat rule.
pub struct ClickLinks {
    /// What a token is appended to: `PUBLIC_BASE_URL/r/` or `https://t.me/<bot>?start=c_`.
    prefix: String,
    secret: Vec<u8>,
    /// (client and token hash) → when it last counted (ms), with when entries older than the
    /// window were last dropped.
    recent: Mutex<(HashMap<u64, i64>, i64)>,
    /// Hashes client addresses with a key of this run, so nothing identifying is kept.
    client_key: u64,
}

impl ClickLinks {
    /// Links under `base_url` (such as `https://bot.example.com`), signed with `secret`.
    pub fn new(base_url: &str, secret: Vec<u8>) -> Self {
        Self::with_prefix(format!("{}/r/", base_url.trim_end_matches('/')), secret)
    }

    /// Deep links that open the bot `bot_username` with the token as start parameter.
    pub fn deep_links(bot_username: &str, secret: Vec<u8>) -> Self {
        Self::with_prefix(format!("https://t.me/{bot_username}?start={DEEP_LINK_PREFIX}"), secret)
    }

    fn with_prefix(prefix: String, secret: Vec<u8>) -> Self {
        ClickLinks { prefix, secret, recent: Mutex::new((HashMap::new(), 0)), client_key: rand::random() }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length.
        HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// The token for button `button` of post `post`.
    pub fn token(&self, post: u64, button: u8) -> String {
        let mut bytes = Vec::with_capacity(PAYLOAD_BYTES + MAC_BYTES);
        bytes.extend_from_slice(&post.to_be_bytes());
        bytes.push(button);
        let mut mac = self.mac();
        mac.update(&bytes);
        let tag = mac.finalize().into_bytes();
        bytes.extend_from_slice(&tag[..MAC_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The tracked address of a button.
    pub fn url(&self, post: u64, button: u8) -> String {
        format!("{}{}", self.prefix, self.token(post, button))
    }

    /// The post and button a token names, if its signature holds.
    pub fn verify(&self, token: &str) -> Option<(u64, u8)> {
        if token.len() > 32 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() != PAYLOAD_BYTES + MAC_BYTES {
            return None;
        }
        let (payload, tag) = bytes.split_at(PAYLOAD_BYTES);
        let mut mac = self.mac();
        mac.update(payload);
        mac.verify_truncated_left(tag).ok()?;
        let post = u64::from_be_bytes(payload[..8].try_into().ok()?);
        Some((post, payload[8]))
    }

    /// Whether a Telegram reader who sent a link that is not ours should be answered: once a
    /// window, so a stream of bad links gets one reply.
    pub fn unknown_link_answer_due(&self, user: i64, now_ms: i64) -> bool {
        self.first_in_window(&telegram_reader(user), "", now_ms)
    }

    /// Whether a click counts: the first from this client on this token within the window.
    pub fn first_in_window(&self, client: &str, token: &str, now_ms: i64) -> bool {
        let key = crate::config::fnv1a([self.client_key.to_le_bytes().as_slice(), client.as_bytes(), token.as_bytes()]);
        let Ok(mut guard) = self.recent.lock() else { return true };
        let (recent, swept) = &mut *guard;
        // Entries older than the window are dropped once a window, so nothing is kept longer.
        if now_ms - *swept >= REPEAT_WINDOW_MS {
            recent.retain(|_, at| now_ms - *at < REPEAT_WINDOW_MS);
            *swept = now_ms;
        }
        if recent.len() >= MAX_REMEMBERED {
            recent.clear();
        }
        match recent.get(&key) {
            Some(at) if now_ms - *at < REPEAT_WINDOW_MS => false,
            _ => {
                recent.insert(key, now_ms);
                true
            }
        }
    }
}

/// What the redirect route needs.
#[derive(Clone)]
pub struct ClickState {
    pub links: Arc<ClickLinks>,
    pub store: Store,
    pub clock: Arc<dyn crate::scheduler::clock::Clock>,
}

/// The links new posts' buttons get under `mode` (`None`: they link directly). The store's
/// secret is asked for (and made, the first time) only when links are made.
pub fn links_for<E>(
    mode: ClickTracking,
    public_base_url: Option<&str>,
    bot_username: &str,
    secret: impl FnOnce() -> Result<Vec<u8>, E>,
) -> Result<Option<Arc<ClickLinks>>, E> {
    Ok(match (mode, public_base_url.map(str::trim).filter(|url| !url.is_empty())) {
        (ClickTracking::Redirect, Some(base)) => Some(Arc::new(ClickLinks::new(base, secret()?))),
        (ClickTracking::DeepLink, _) => Some(Arc::new(ClickLinks::deep_links(bot_username, secret()?))),
        _ => None,
    })
}

/// Who followed a tracked link, as far as the bot can tell.
pub enum Reader {
    /// A browser: its address and user agent, only to tell repeats apart (never stored).
    Web { client: String, reader: bool },
    /// A Telegram user who opened the bot through a deep link.
    Telegram { user: i64 },
}

/// Where a valid tracked link leads.
pub struct Followed {
    /// The address as a client parses it (non-ASCII hosts and paths encoded).
    pub target: String,
    /// The button's label.
    pub label: String,
    /// Whether this click was counted (a reader's first on this button within the window, on
    /// a post in the channel).
    pub counted: bool,
    /// Whether the same reader followed the same link within the window already.
    pub repeated: bool,
}

/// Follows a tracked link: checks the token, finds the button, counts the click if it is a
/// reader's first within the window on a post in the channel. `None`: not ours, or no button.
pub async fn follow(state: &ClickState, token: &str, reader: Reader) -> Option<Followed> {
    let Some((post, button, label, target)) = button_of(state, token).await else {
        crate::telemetry::click("not_found");
        return None;
    };
    let now_ms = state.clock.now_ms();
    let (client, user, reader) = match reader {
        Reader::Web { client, reader } => (client, None, reader),
        Reader::Telegram { user } => (telegram_reader(user), Some(user), true),
    };
    // A post being sent is already in the channel (its messages go out before it is recorded).
    let in_channel = matches!(post.status, PostStatus::Published | PostStatus::Publishing);
    let repeated = reader && in_channel && !state.links.first_in_window(&client, token, now_ms);
    let mut counted = reader && in_channel && !repeated;
    if counted {
        let store = state.store.clone();
        let click = Click { at: now_ms.div_euclid(1000), post: post.id, button, user };
        // A reader known by id is also checked against the store: an update Telegram delivers
        // again after a restart (the window above is forgotten then) is not counted twice.
        let window_secs = REPEAT_WINDOW_MS / 1000;
        let recorded = tokio::task::spawn_blocking(move || match click.user {
            Some(_) => store.record_click_once(click, window_secs),
            None => store.record_click(click).map(|()| true),
        })
        .await
        .map_err(|err| err.to_string())
        .and_then(|recorded| recorded.map_err(|err| err.to_string()));
        counted = recorded.unwrap_or_else(|err| {
            tracing::warn!(post = post.id, "a click could not be recorded: {err}");
            false
        });
    }
    crate::telemetry::click(if counted { "counted" } else { "not_counted" });
    Some(Followed { target, label, counted, repeated })
}

/// The post and button a token names, with the button's label and address (as a client parses
/// it: non-ASCII hosts and paths encoded); `None` if the token is not ours or the button is gone.
async fn button_of(state: &ClickState, token: &str) -> Option<(Post, u8, String, String)> {
    let Some((post_id, button)) = state.links.verify(token) else {
        tracing::debug!("a click with an unknown or tampered token");
        return None;
    };
    let store = state.store.clone();
    let post = tokio::task::spawn_blocking(move || store.post(post_id)).await.ok()?.ok()??;
    let link = post.buttons.get(button as usize)?;
    let (label, target) = (link.label.clone(), url::Url::parse(&link.url).ok()?.to_string());
    Some((post, button, label, target))
}

/// How a Telegram reader is told apart for the repeat rule.
fn telegram_reader(user: i64) -> String {
    format!("telegram:{user}")
}

/// `GET /r/{token}`: 302 to the button's address, counting the click; 404 for a token that is
/// not ours or names no button.
pub async fn redirect(
    State(state): State<ClickState>,
    method: Method,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    // Behind a reverse proxy on this machine, the client is the address that proxy added last
    // to X-Forwarded-For; from anyone else the header is not believed.
    let forwarded = peer.ip().is_loopback().then(|| headers.get("x-forwarded-for")).flatten();
    let client = forwarded
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| peer.ip().to_string());
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // Link checkers send HEAD; only a GET is a reader.
    let reader = Reader::Web { client: format!("{client}|{agent}"), reader: method == Method::GET };
    match follow(&state, &token, reader).await {
        Some(followed) => {
            (StatusCode::FOUND, [(header::LOCATION, followed.target), (header::CACHE_CONTROL, "no-store".to_string())])
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "This link is not known.\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_button_and_refuse_tampering() {
        let links = ClickLinks::new("https://bot.example/", b"secret".to_vec());
        let token = links.token(1234, 2);
        assert_eq!(token.len(), 24);
        assert_eq!(links.verify(&token), Some((1234, 2)));
        assert!(links.url(1234, 2).starts_with("https://bot.example/r/"));
        let mut tampered: Vec<char> = token.chars().collect();
        tampered[3] = if tampered[3] == 'A' { 'B' } else { 'A' };
        assert_eq!(links.verify(&tampered.iter().collect::<String>()), None);
        assert_eq!(ClickLinks::new("https://bot.example", b"other".to_vec()).verify(&token), None);
        assert_eq!(links.verify("short"), None);
        assert_eq!(links.verify(&"A".repeat(400)), None);
    }

    #[test]
    fn deep_links_carry_the_same_token_within_telegrams_start_parameter_rules() {
        let links = ClickLinks::deep_links("shop_bot", b"secret".to_vec());
        let url = links.url(1234, 2);
        let parameter = url.strip_prefix("https://t.me/shop_bot?start=").expect(&url);
        assert!(parameter.len() <= 64, "{parameter}");
        assert!(parameter.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{parameter}");
        let token = deep_link_token(parameter).expect("a click's parameter");
        assert_eq!(token, links.token(1234, 2));
        // Any handle with the store's secret checks it, whatever links it makes.
        assert_eq!(ClickLinks::new("https://bot.example", b"secret".to_vec()).verify(token), Some((1234, 2)));
        assert_eq!(deep_link_token("hello"), None, "another start parameter");
    }

    #[test]
    fn repeated_clicks_within_the_window_count_once() {
        let links = ClickLinks::new("https://bot.example", b"secret".to_vec());
        assert!(links.first_in_window("1.2.3.4|agent", "t", 1_000));
        assert!(!links.first_in_window("1.2.3.4|agent", "t", 1_000 + REPEAT_WINDOW_MS - 1));
        assert!(links.first_in_window("5.6.7.8|agent", "t", 2_000), "another client");
        assert!(links.first_in_window("1.2.3.4|agent", "u", 2_000), "another button");
        assert!(links.first_in_window("1.2.3.4|agent", "t", 1_000 + REPEAT_WINDOW_MS), "after the window");
    }
}
