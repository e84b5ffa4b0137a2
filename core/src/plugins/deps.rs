//! What the plugin host reaches of the server, and nothing more: the database, the
//! clock, the metrics, the organization policy, the outbox, the shared templates,
//! the public URL, and the live calls through [`LiveCalls`]. The host and every
//! capability take these instead of the whole application state, so that each can
//! be built and tested alone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::PluginHost;
use super::capabilities::calls::{PluginCallAction, PluginCallAnswer, PluginCallError};
use crate::clock::Clock;
use crate::mail::Outbox;
use crate::metrics::Metrics;
use crate::policy::PolicyCache;
use crate::store::Store;

/// The server's parts the plugins use. Cheap to clone (reference counts).
#[derive(Clone)]
pub struct PluginDeps {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub policy: Arc<PolicyCache>,
    /// Where the `mail` capability queues messages.
    pub mail: Outbox,
    /// The server's templates (plugins may render the shared `email/` ones).
    pub templates: Arc<tera::Tera>,
    /// The base URL links are built on, without a trailing slash.
    pub public_url: Arc<str>,
    /// The calls running on this node, for the `calls` capability.
    pub calls: Arc<dyn LiveCalls>,
    /// The plugins themselves: capabilities that change links tell them.
    pub plugins: Arc<PluginHost>,
}

/// A boxed future, for the object-safe [`LiveCalls`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The live calls, as the `calls` capability reaches them. The call registry
/// (`calls::CallRegistry`) implements it; the plugins know nothing else of calls.
pub trait LiveCalls: Send + Sync {
    /// Carries out `action` on the call running on the link `link_pk`.
    fn plugin_action(
        &self,
        link_pk: i64,
        action: PluginCallAction,
    ) -> BoxFuture<'_, Result<PluginCallAnswer, PluginCallError>>;
}
