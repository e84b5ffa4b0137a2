//! Signaling: one WebSocket connection per browser, between it and its call. The
//! session reads [`ClientMessage`](crate::protocol::ClientMessage)s, checks them,
//! hands them to the call as [`calls::CallRequest`](crate::calls::CallRequest)s, and writes
//! the call's [`ServerMessage`](crate::protocol::ServerMessage)s back. The messages
//! themselves are in [`crate::protocol`]; `docs/signaling.md` documents them.

mod session;

pub use session::{Client, upgrade};
