//! One invocation of a plugin: a pooled instance with its deadline and memory
//! limit, and what a failure does to the plugin.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::PluginDeps;

use super::*;

impl PluginHost {
    /// Runs one export in a fresh sandbox and keeps the books: metrics, failure
    /// counts, automatic switch-off.
    pub(super) async fn invoke<R, F>(
        &self,
        deps: &PluginDeps,
        plugin: &Arc<Loaded>,
        hook: &'static str,
        acting_user: Option<i64>,
        deadline: Duration,
        call: F,
    ) -> Result<R, InvokeError>
    where
        R: Send,
        F: for<'a> FnOnce(
                &'a bindings::Plugin,
                &'a mut wasmtime::Store<HostState>,
            ) -> Pin<
                Box<dyn std::future::Future<Output = wasmtime::Result<R>> + Send + 'a>,
            > + Send,
    {
        let name = plugin.grants.name.to_string();
        let started = Instant::now();
        let Ok(Ok(_permit)) =
            tokio::time::timeout(deadline, plugin.permits.clone().acquire_owned()).await
        else {
            deps.metrics.plugin_invocation(&name, hook, "busy", 0.0);
            return Err(InvokeError::Busy(name));
        };
        let runtime = Runtime::get().map_err(|reason| InvokeError::Failed {
            plugin: name.clone(),
            reason,
        })?;
        let mut store = runtime::new_store(
            runtime,
            plugin.grants.clone(),
            deps,
            acting_user,
            plugin.memory_bytes,
            deadline,
        );
        let pre = plugin.pre.clone();
        let run = async {
            let instance = pre.instantiate_async(&mut store).await?;
            call(&instance, &mut store).await
        };
        // The epoch deadline stops guest code; this stops a capability call that hangs.
        let outcome = tokio::time::timeout(deadline + Duration::from_millis(50), run).await;
        plugin.invocations.fetch_add(1, Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        let error = match outcome {
            Ok(Ok(value)) => {
                plugin.consecutive_failures.store(0, Ordering::Relaxed);
                deps.metrics.plugin_invocation(&name, hook, "ok", elapsed);
                return Ok(value);
            }
            Ok(Err(e)) => match describe_failure(&e, deadline) {
                Failure::NoRoom(error) => {
                    deps.metrics.plugin_invocation(&name, hook, "busy", elapsed);
                    tracing::warn!(plugin = %name, hook, %error, "plugin not run");
                    return Err(InvokeError::Busy(name));
                }
                Failure::Plugin(error) => error,
            },
            Err(_) => format!("ran past its deadline of {} ms", deadline.as_millis()),
        };
        deps.metrics
            .plugin_invocation(&name, hook, "failed", elapsed);
        plugin.failures.fetch_add(1, Ordering::Relaxed);
        *plugin.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("{hook}: {error}"));
        let in_a_row = plugin.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(plugin = %name, hook, %error, failures_in_a_row = in_a_row, "plugin invocation failed");
        let limit = self.config.failures_before_disable;
        if limit > 0 && in_a_row == limit {
            self.auto_disable(
                deps,
                &name,
                &format!("{in_a_row} failures in a row; the last: {hook}: {error}"),
            )
            .await;
        }
        Err(InvokeError::Failed {
            plugin: name,
            reason: error,
        })
    }

    pub(super) async fn auto_disable(&self, deps: &PluginDeps, name: &str, reason: &str) {
        tracing::error!(plugin = %name, reason, "switching the plugin off; an administrator can switch it back on");
        deps.metrics.plugin_auto_disabled(name);
        let now = deps.clock.now();
        if let Err(e) = deps.store.set_plugin_auto_disabled(name, reason, now).await {
            tracing::error!(plugin = %name, error = %e, "cannot record why the plugin was switched off");
        }
        if let Err(e) = self.set_enabled(deps, name, false).await {
            tracing::error!(plugin = %name, error = %e, "cannot switch the plugin off");
        }
    }
}

/// Why a call failed: the plugin's fault, or no room in the instance pool (the
/// server's, not counted against the plugin).
pub(super) enum Failure {
    Plugin(String),
    NoRoom(String),
}

pub(super) fn describe_failure(error: &wasmtime::Error, deadline: Duration) -> Failure {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return Failure::Plugin(match trap {
            wasmtime::Trap::Interrupt => {
                format!("ran past its deadline of {} ms", deadline.as_millis())
            }
            wasmtime::Trap::StackOverflow => "overflowed its stack".into(),
            other => format!("trapped: {other}"),
        });
    }
    let text = format!("{error:#}");
    if text.contains("maximum concurrent") || text.contains("pooling allocator") {
        return Failure::NoRoom(format!(
            "the server has no room for another plugin instance now ({text})"
        ));
    }
    Failure::Plugin(clip(&text, 500))
}

pub(super) fn clip(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(max_chars).collect();
        out.push('…');
        out
    }
}
