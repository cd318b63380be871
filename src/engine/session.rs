//! Per-chat session state: plain serialisable data that the store keeps between events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The state of one chat's conversation. Fields missing in a stored record take their defaults,
/// so records written by an older postflow still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Session {
    pub chat_id: i64,
    pub user_id: i64,
    /// Bumped whenever a new interactive message is rendered; buttons carry it, so presses on
    /// older messages are recognised as outdated. Never reset, not even by `session.clear`.
    pub nonce: u32,
    /// The flow call stack; empty when no flow runs. The last frame is the current step.
    pub stack: Vec<Frame>,
    pub slots: BTreeMap<String, serde_json::Value>,
    pub wait: Wait,
    pub view: View,
    /// Id of the next action request; results with another id are stale.
    pub next_request: u64,
    /// The action the session waits for, kept so a restart can carry it out again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingAction>,
    /// Unix seconds of the last event.
    pub updated_at: i64,
    /// Notices that arrived while an action ran, shown once the chat is free again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<Notice>,
}

/// Something the bot tells an admin on its own (a post failed, was published late...): a flow
/// to show, from `step` (default its start), with slots set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub flow: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default)]
    pub slots: BTreeMap<String, serde_json::Value>,
}

impl Session {
    pub fn new(chat_id: i64, user_id: i64) -> Self {
        Session { chat_id, user_id, ..Session::default() }
    }

    /// The current flow and step, if a flow runs.
    pub fn current(&self) -> Option<&Frame> {
        self.stack.last()
    }

    pub fn is_idle(&self) -> bool {
        self.stack.is_empty()
    }
}

/// A position in a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub flow: String,
    pub step: String,
    /// A notice interrupted the conversation with this frame: when it ends, the step below is
    /// shown again (rather than moved past).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupt: bool,
    /// For an interrupting notice: the interrupted conversation's values of the slots the
    /// notice uses (`None`: unset), given back when the notice ends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shadowed: BTreeMap<String, Option<serde_json::Value>>,
}

/// What the session waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum Wait {
    #[default]
    Nothing,
    User,
    Action {
        request_id: u64,
    },
}

/// State of the message currently shown with buttons: generated list items, pager page,
/// calendar month and time-picker hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub fingerprint: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ListItem>,
    #[serde(default)]
    pub page: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<(i32, u32)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<u32>,
}

/// One generated button: its label and the value saved when it is pressed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListItem {
    pub label: String,
    pub value: serde_json::Value,
}

/// An action requested by the engine whose result has not arrived yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAction {
    pub request_id: u64,
    pub name: String,
    pub args: serde_json::Value,
}
