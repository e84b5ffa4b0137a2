//! The limits of the capabilities, as the server applies them to every call a
//! plugin makes (and the test harness too). A call over a limit gets
//! `error.limit-reached` or `error.invalid`, never a trap.

use std::time::Duration;

/// `kv`: longest key, in bytes.
pub const KV_MAX_KEY_BYTES: usize = 256;
/// `kv`: largest value, in bytes.
pub const KV_MAX_VALUE_BYTES: usize = 64 * 1024;
/// `kv`: most keys one `keys` call lists.
pub const KV_MAX_KEYS_PER_PAGE: u32 = 1000;
/// `kv`: most keys of one `get-many` or `set-many`.
pub const KV_MAX_KEYS_AT_ONCE: usize = 1000;

/// `links`: most links `list-owned` returns.
pub const LINKS_MAX_LIST: u64 = 1000;
/// `links`: most links one `create-many` makes.
pub const LINKS_MAX_CREATE_AT_ONCE: usize = 1000;

/// `calls`: largest payload a plugin sends to a call in one message.
pub const CALLS_MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Largest payload of a message a participant sends on a plugin's channel (base64
/// of it fits the signaling's 64 KiB message limit).
pub const MAX_CALL_MESSAGE_BYTES: usize = 32 * 1024;

/// `mail`: recipients (to and cc together) per message.
pub const MAIL_MAX_RECIPIENTS: usize = 100;
/// `mail`: subject length in characters.
pub const MAIL_MAX_SUBJECT_CHARS: usize = 400;
/// `mail`: bodies and attachments together, in bytes.
pub const MAIL_MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// `mail`: the longest one-click unsubscribe URL (`List-Unsubscribe`), in bytes.
pub const MAIL_MAX_UNSUBSCRIBE_URL_BYTES: usize = 2048;

/// `http-client`: the longest a request may take, and the default.
pub const HTTP_MAX_TIMEOUT: Duration = Duration::from_secs(10);
/// `http-client`: largest request or response body.
pub const HTTP_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// `templates`: largest JSON context.
pub const TEMPLATES_MAX_CONTEXT_BYTES: usize = 1024 * 1024;

/// `log`: longest message kept; the rest is cut.
pub const LOG_MAX_MESSAGE_BYTES: usize = 4096;
