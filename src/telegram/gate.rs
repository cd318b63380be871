//! Who may talk to the bot, and how fast: the whitelist, the one refusal to outsiders and
//! per-user flood control. Pure bookkeeping over `Instant`s; the adapter acts on the verdicts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Flood-control limits: more than `max_updates` in `window` mutes a user for `mute`.
#[derive(Debug, Clone, Copy)]
pub struct FloodLimits {
    pub max_updates: usize,
    pub window: Duration,
    pub mute: Duration,
}

/// What to do with an update from a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// An authorised user within limits: hand the update to the engine.
    Admit,
    /// An outsider seen for the first time in a while: send the refusal once.
    Refuse,
    /// An authorised user who just went over the flood limit: send the warning once.
    WarnFlood,
    /// Drop the update without a reply (an outsider already refused, a muted user).
    Ignore,
}

/// Whether this attempt should be written to the log (attempts are logged at most once a
/// minute per user, with the count since the last line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine {
    pub attempts_since_last: u64,
}

/// The gatekeeper.
pub struct Gate {
    authorized: HashSet<i64>,
    flood: FloodLimits,
    /// An outsider is not answered again for this long.
    refusal_quiet: Duration,
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    outsiders: HashMap<i64, Outsider>,
    recent: HashMap<i64, VecDeque<Instant>>,
    muted_until: HashMap<i64, Instant>,
}

struct Outsider {
    refused_at: Option<Instant>,
    logged_at: Option<Instant>,
    unlogged: u64,
}

/// At most this many outsiders are remembered; the oldest are forgotten first.
const MAX_REMEMBERED: usize = 10_000;
const LOG_INTERVAL: Duration = Duration::from_secs(60);

impl Gate {
    pub fn new(authorized: impl IntoIterator<Item = i64>, flood: FloodLimits, refusal_quiet: Duration) -> Self {
        Gate {
            authorized: authorized.into_iter().collect(),
            flood,
            refusal_quiet,
            state: Mutex::new(GateState::default()),
        }
    }

    /// Decides about one update from `user_id` arriving at `now`.
    pub fn check(&self, user_id: i64, now: Instant) -> (Verdict, Option<LogLine>) {
        let mut state = super::lock(&self.state);
        if !self.authorized.contains(&user_id) {
            return state.outsider(user_id, now, self.refusal_quiet);
        }
        match state.flood(user_id, now, &self.flood) {
            Flood::Within => (Verdict::Admit, None),
            Flood::JustOver => (Verdict::WarnFlood, Some(LogLine { attempts_since_last: 1 })),
            Flood::Muted => (Verdict::Ignore, None),
        }
    }

    /// Whether anyone following a deep link from a channel post (readers need not be admins)
    /// is within the flood limits; over them they are muted like an admin, without a warning.
    pub fn reader_within_limits(&self, user_id: i64, now: Instant) -> bool {
        let mut state = super::lock(&self.state);
        if state.recent.len() >= MAX_REMEMBERED && !state.recent.contains_key(&user_id) {
            // Readers are many: those quiet for a window are forgotten.
            let window = self.flood.window;
            state.recent.retain(|_, times| times.back().is_some_and(|at| now.duration_since(*at) <= window));
            state.muted_until.retain(|_, until| now < *until);
            if state.recent.len() >= MAX_REMEMBERED {
                return false;
            }
        }
        state.flood(user_id, now, &self.flood) == Flood::Within
    }
}

/// Where a user stands against the flood limits.
#[derive(Debug, PartialEq, Eq)]
enum Flood {
    Within,
    /// This update went over: muted from now on.
    JustOver,
    /// Muted earlier and still is.
    Muted,
}

impl GateState {
    /// Counts an update against the flood limits.
    fn flood(&mut self, user_id: i64, now: Instant, limits: &FloodLimits) -> Flood {
        if let Some(until) = self.muted_until.get(&user_id).copied() {
            if now < until {
                return Flood::Muted;
            }
            self.muted_until.remove(&user_id);
        }
        let recent = self.recent.entry(user_id).or_default();
        while recent.front().is_some_and(|at| now.duration_since(*at) > limits.window) {
            recent.pop_front();
        }
        recent.push_back(now);
        if recent.len() > limits.max_updates {
            recent.clear();
            self.muted_until.insert(user_id, now + limits.mute);
            return Flood::JustOver;
        }
        Flood::Within
    }

    fn outsider(&mut self, user_id: i64, now: Instant, quiet: Duration) -> (Verdict, Option<LogLine>) {
        if self.outsiders.len() >= MAX_REMEMBERED && !self.outsiders.contains_key(&user_id) {
            let oldest = self.outsiders.iter().min_by_key(|(_, o)| o.refused_at).map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.outsiders.remove(&oldest);
            }
        }
        let outsider =
            self.outsiders.entry(user_id).or_insert(Outsider { refused_at: None, logged_at: None, unlogged: 0 });
        outsider.unlogged += 1;
        let log = match outsider.logged_at {
            Some(at) if now.duration_since(at) < LOG_INTERVAL => None,
            _ => {
                outsider.logged_at = Some(now);
                Some(LogLine { attempts_since_last: std::mem::take(&mut outsider.unlogged) })
            }
        };
        let verdict = match outsider.refused_at {
            Some(at) if now.duration_since(at) < quiet => Verdict::Ignore,
            _ => {
                outsider.refused_at = Some(now);
                Verdict::Refuse
            }
        };
        (verdict, log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        let flood = FloodLimits { max_updates: 3, window: Duration::from_secs(10), mute: Duration::from_secs(60) };
        Gate::new([1], flood, Duration::from_secs(600))
    }

    #[test]
    fn an_outsider_is_refused_once_then_ignored_until_the_quiet_period_ends() {
        let gate = gate();
        let t0 = Instant::now();
        assert_eq!(gate.check(2, t0), (Verdict::Refuse, Some(LogLine { attempts_since_last: 1 })));
        assert_eq!(gate.check(2, t0 + Duration::from_secs(1)), (Verdict::Ignore, None));
        assert_eq!(gate.check(2, t0 + Duration::from_secs(2)).0, Verdict::Ignore);
        let later = gate.check(2, t0 + Duration::from_secs(61));
        assert_eq!(
            later,
            (Verdict::Ignore, Some(LogLine { attempts_since_last: 3 })),
            "logged once a minute, with a count"
        );
        assert_eq!(gate.check(2, t0 + Duration::from_secs(601)).0, Verdict::Refuse);
    }

    #[test]
    fn a_flooding_admin_is_warned_once_and_ignored_for_the_mute_period() {
        let gate = gate();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(gate.check(1, t0 + Duration::from_millis(i * 100)).0, Verdict::Admit);
        }
        assert_eq!(gate.check(1, t0 + Duration::from_millis(400)).0, Verdict::WarnFlood);
        assert_eq!(gate.check(1, t0 + Duration::from_secs(30)).0, Verdict::Ignore);
        assert_eq!(gate.check(1, t0 + Duration::from_secs(61)).0, Verdict::Admit);
    }

    #[test]
    fn a_reader_following_deep_links_too_fast_is_muted_for_a_while() {
        let gate = gate();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(gate.reader_within_limits(5, t0 + Duration::from_millis(i * 100)), "an outsider reads");
        }
        assert!(!gate.reader_within_limits(5, t0 + Duration::from_millis(400)));
        assert!(!gate.reader_within_limits(5, t0 + Duration::from_secs(30)), "muted");
        assert!(gate.reader_within_limits(6, t0 + Duration::from_secs(30)), "another reader is not");
        assert!(gate.reader_within_limits(5, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn updates_spread_over_time_never_trip_the_flood_limit() {
        let gate = gate();
        let t0 = Instant::now();
        for i in 0..100 {
            assert_eq!(gate.check(1, t0 + Duration::from_secs(4 * i)).0, Verdict::Admit);
        }
    }
}
