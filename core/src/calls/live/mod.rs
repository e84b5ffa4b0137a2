//! Live calls: one task per call owns its [`Call`](crate::calls::Call) and the connections of everyone
//! on it or waiting for it. Signaling sessions send it [`CallRequest`]s through a bounded
//! channel; it answers each client on that client's own outbound queue.
//!
//! [`CallRegistry`] maps a link to its live call and starts one when the link is used
//! after the previous call ended. All of a call's state lives in its task, so the
//! call can be owned by exactly one node when Confab runs on several.
//!
//! The task is a loop around a step that only decides: each `Input`
//! (a connection's or a plugin's request, a tick, a link change) changes the
//! call and appends `Effect`s (messages, media commands,
//! metadata, plugin events), which the loop then carries out. A step can be driven
//! in a test with its own times and its effects read back.
//!
//! The files: `command.rs` (what a task is asked), `registry.rs` (the live calls
//! by link), `task.rs` (the task and its loop), `effects.rs` (inputs, effects and
//! carrying them out), `actions.rs` (each action), `activities.rs` (shared
//! activities, around [`Activities`](crate::calls::activity::Activities)),
//! `plugin_calls.rs` (screening,
//! plugin requests and events), `outputs.rs` (media commands, messages for events,
//! snapshots).

use std::time::Duration;

mod actions;
mod activities;
mod command;
mod deps;
mod effects;
mod outputs;
mod plugin_calls;
mod registry;
pub mod relay;
mod task;
#[cfg(test)]
mod tests;

pub use command::{Action, ActivityRequest, CallRequest, ClientId, MediaState, next_client_id};
pub use registry::CallRegistry;

/// Commands waiting for a call's task; beyond this, senders wait.
const COMMAND_QUEUE: usize = 256;
/// How often a call applies its time-based rules (lobby timeout, reconnect grace).
const TICK: Duration = Duration::from_secs(1);
/// How often a live call re-reads its link, for changes made by another process
/// (the CLI, another node); changes made through this process arrive at once.
const LINK_RECHECK: Duration = Duration::from_secs(5);
