//! Telegram's message rates, kept exactly: at most one message a second in a private chat, 20 a
//! minute in a channel, 30 a second in all, and a global pause after a 429. A message that may go
//! now goes now; one that may not waits precisely until it may (teloxide's Throttle checks its
//! queue only every 250 ms, which alone would add ~125 ms to a typical reply).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Least time between two messages in one private chat.
    pub chat_gap: Duration,
    /// Messages per `channel_window` in one channel or group (Telegram: 20 a minute).
    pub per_minute_in_channel: usize,
    /// The window of the channel limit: a minute (tests shorten it).
    pub channel_window: Duration,
    /// Messages per second in all chats together.
    pub per_second_overall: usize,
}

/// Telegram's published limits.
pub const TELEGRAM: Limits = Limits {
    chat_gap: Duration::from_secs(1),
    per_minute_in_channel: 20,
    channel_window: MINUTE,
    per_second_overall: 30,
};

/// Requests reach Telegram a little after they are let go, and not always in the same order or
/// with the same delay; the windows are this much longer than the limits so that Telegram,
/// counting arrivals, never sees a breach.
const MARGIN: Duration = Duration::from_millis(150);

/// Which messages go first when the overall budget is tight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// The first message answering what a user just did.
    Reply,
    /// Further messages of the same answer, notices and channel posts.
    FollowUp,
}

/// The pacer shared by everything that sends.
pub struct Pace {
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_in_chat: HashMap<i64, Instant>,
    channel_sends: HashMap<i64, VecDeque<Instant>>,
    all_sends: VecDeque<Instant>,
    frozen_until: Option<Instant>,
    /// Set by [`Pace::after_restart`]: counts as the last message of every chat not seen since.
    started: Option<Instant>,
}

const MINUTE: Duration = Duration::from_secs(60);
const SECOND: Duration = Duration::from_secs(1);

impl Pace {
    pub fn new(limits: Limits) -> Self {
        Pace { limits, state: Mutex::new(State::default()) }
    }

    /// A pacer for a process that has just started: it does not know what each private chat
    /// got just before (a restart), so a chat's first message waits one chat gap from now.
    pub fn after_restart(limits: Limits) -> Self {
        let state = State { started: Some(Instant::now()), ..State::default() };
        Pace { limits, state: Mutex::new(state) }
    }

    /// Waits until a message to `chat_id` may go, and counts it as sent.
    pub async fn wait_turn(&self, chat_id: i64, priority: Priority) {
        self.wait_turn_for(chat_id, priority, 1).await
    }

    /// Like [`Pace::wait_turn`] for `weight` messages sent at once (an album counts each file
    /// towards the channel and overall limits, and once towards a private chat's gap).
    pub async fn wait_turn_for(&self, chat_id: i64, priority: Priority, weight: usize) {
        let weight = weight.max(1);
        // Follow-ups leave a fifth of the overall budget to first replies, so that a burst of
        // long answers does not hold up everyone else's next screen.
        let overall = match priority {
            Priority::Reply => self.limits.per_second_overall,
            Priority::FollowUp => self.limits.per_second_overall * 4 / 5,
        };
        let limits = Limits { per_second_overall: overall.max(1), ..self.limits };
        loop {
            let wait_until = {
                let mut state = super::lock(&self.state);
                match state.earliest(chat_id, &limits, weight, Instant::now()) {
                    None => {
                        state.record(chat_id, weight, Instant::now());
                        return;
                    }
                    Some(at) => at,
                }
            };
            tracing::debug!(
                chat_id,
                wait_ms = wait_until.duration_since(Instant::now()).as_millis() as u64,
                "pacing a message"
            );
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// Waits out a 429 pause, if one is on.
    pub async fn wait_unfrozen(&self) {
        let frozen = super::lock(&self.state).frozen_until;
        if let Some(until) = frozen
            && until > Instant::now()
        {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Stops every send until `until` (Telegram answered 429 with `retry_after`).
    pub fn freeze(&self, until: Instant) {
        let mut state = super::lock(&self.state);
        if state.frozen_until.is_none_or(|frozen| frozen < until) {
            state.frozen_until = Some(until);
        }
    }
}

/// Channels and groups have negative ids; private chats positive.
fn is_private(chat_id: i64) -> bool {
    chat_id > 0
}

impl State {
    /// `None` if a message may go at `now`, else the earliest moment it may.
    fn earliest(&mut self, chat_id: i64, limits: &Limits, weight: usize, now: Instant) -> Option<Instant> {
        let mut at = now;
        if let Some(frozen) = self.frozen_until {
            if frozen > now {
                at = at.max(frozen);
            } else {
                self.frozen_until = None;
            }
        }
        let (second, minute) = (SECOND + MARGIN, limits.channel_window + MARGIN);
        while self.all_sends.front().is_some_and(|t| now.duration_since(*t) >= second) {
            self.all_sends.pop_front();
        }
        if let Some(leaving) = must_leave(&self.all_sends, weight, limits.per_second_overall) {
            at = at.max(leaving + second);
        }
        if is_private(chat_id) {
            if let Some(last) = self.last_in_chat.get(&chat_id).or(self.started.as_ref()) {
                at = at.max(*last + limits.chat_gap + MARGIN);
            }
        } else {
            let sends = self.channel_sends.entry(chat_id).or_default();
            while sends.front().is_some_and(|t| now.duration_since(*t) >= minute) {
                sends.pop_front();
            }
            if let Some(leaving) = must_leave(sends, weight, limits.per_minute_in_channel) {
                at = at.max(leaving + minute);
            }
        }
        (at > now).then_some(at)
    }

    fn record(&mut self, chat_id: i64, weight: usize, now: Instant) {
        self.all_sends.extend(std::iter::repeat_n(now, weight));
        if is_private(chat_id) {
            self.last_in_chat.insert(chat_id, now);
            // Chats quiet for longer than the gap need no memory.
            if self.last_in_chat.len() > 4096 {
                self.last_in_chat.retain(|_, last| now.duration_since(*last) < SECOND);
            }
        } else {
            self.channel_sends.entry(chat_id).or_default().extend(std::iter::repeat_n(now, weight));
        }
    }
}

/// The send time that must leave the window before `weight` more fit under `limit`, if any.
fn must_leave(window: &VecDeque<Instant>, weight: usize, limit: usize) -> Option<Instant> {
    let over = (window.len() + weight).checked_sub(limit)?;
    if over == 0 {
        return None;
    }
    // More than the whole window must leave: wait for the newest (then the window is empty).
    window.get(over - 1).or_else(|| window.back()).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Pace {
        async fn wait_turn_test(&self, chat_id: i64) {
            self.wait_turn(chat_id, Priority::Reply).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn follow_ups_leave_room_for_first_replies() {
        let pace = Pace::new(TELEGRAM);
        let start = Instant::now();
        for chat in 1..=24 {
            pace.wait_turn(chat, Priority::FollowUp).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        pace.wait_turn(25, Priority::Reply).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "a first reply still goes");
        pace.wait_turn(26, Priority::FollowUp).await;
        assert_eq!(start.elapsed(), SECOND + MARGIN, "a follow-up over four fifths of the budget waits");
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_message_goes_at_once_and_the_next_in_the_same_chat_a_second_later() {
        let pace = Pace::new(TELEGRAM);
        let start = Instant::now();
        pace.wait_turn_test(7).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        pace.wait_turn_test(8).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "another chat is not held up");
        pace.wait_turn_test(7).await;
        assert_eq!(start.elapsed(), SECOND + MARGIN);
    }

    #[tokio::test(start_paused = true)]
    async fn thirty_a_second_overall_and_twenty_a_minute_in_a_channel() {
        let pace = Pace::new(TELEGRAM);
        let start = Instant::now();
        for chat in 1..=30 {
            pace.wait_turn_test(chat).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        pace.wait_turn_test(31).await;
        assert_eq!(start.elapsed(), SECOND + MARGIN, "the 31st message waits for the window");
        let channel = -100_123;
        let start = Instant::now();
        for _ in 0..20 {
            pace.wait_turn_test(channel).await;
        }
        pace.wait_turn_test(channel).await;
        assert!(start.elapsed() >= MINUTE, "the 21st channel message waits a minute");
    }

    #[tokio::test(start_paused = true)]
    async fn an_album_counts_each_file_towards_the_channel_limit() {
        let pace = Pace::new(TELEGRAM);
        let channel = -1_001_007;
        let start = Instant::now();
        pace.wait_turn_for(channel, Priority::Reply, 10).await;
        pace.wait_turn_for(channel, Priority::Reply, 10).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "twenty files fit in a minute");
        pace.wait_turn(channel, Priority::Reply).await;
        assert!(start.elapsed() >= MINUTE, "the twenty-first waits");
    }

    #[tokio::test(start_paused = true)]
    async fn a_freeze_holds_every_chat() {
        let pace = Pace::new(TELEGRAM);
        let start = Instant::now();
        pace.freeze(start + Duration::from_secs(5));
        pace.wait_turn_test(1).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }
}
