//! Calling a plugin's hooks: events, lobby decisions, HTTP routes, call
//! messages and timers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::PluginDeps;
use crate::config::LobbyFallback;

use super::invoke::clip;
use super::*;

impl PluginHost {
    /// The plugins whose `events` hook covers `kind`.
    pub(super) fn listeners(&self, kind: manifest::EventKind) -> Vec<Arc<Loaded>> {
        self.read()
            .values()
            .filter(|p| p.grants.manifest.wants_event(kind))
            .cloned()
            .collect()
    }

    pub(super) fn emit(&self, deps: &PluginDeps, event: Event) {
        for plugin in self.listeners(event.kind()) {
            let queue = plugin.queue.get_or_init(|| {
                let (tx, rx) = mpsc::channel(EVENT_QUEUE);
                tokio::spawn(deliver_events(
                    deps.clone(),
                    plugin.grants.name.to_string(),
                    rx,
                ));
                tx
            });
            if queue.try_send(event.clone()).is_err() {
                plugin.dropped_events.fetch_add(1, Ordering::Relaxed);
                deps.metrics.plugin_events_dropped(&plugin.grants.name);
                tracing::warn!(plugin = %plugin.grants.name, "plugin event queue is full: event dropped");
            }
        }
    }

    /// Delivers `event` to every plugin that listens and is switched on, all at once,
    /// and returns when each has handled it (or failed). [`emit`] queues instead and
    /// never waits; this is for callers that must know the event was handled.
    pub async fn dispatch(&self, deps: &PluginDeps, event: Event) {
        let listeners = self.listeners(event.kind());
        let deliveries = listeners
            .iter()
            .map(|plugin| self.deliver(deps, &plugin.grants.name, &event));
        futures_util::future::join_all(deliveries).await;
    }

    /// Runs one plugin's `on-event` for `event`, if the plugin is switched on.
    pub(super) async fn deliver(
        &self,
        deps: &PluginDeps,
        name: &str,
        event: &Event,
    ) -> Result<(), InvokeError> {
        let plugin = self.enabled(deps, name).await?;
        let deadline = Duration::from_millis(u64::from(plugin.grants.manifest.limits.deadline_ms));
        let wit_event = event.to_wit();
        self.invoke(
            deps,
            &plugin,
            "event",
            event.actor(),
            deadline,
            move |p, s| {
                Box::pin(async move { p.confab_plugin_hooks().call_on_event(s, &wit_event).await })
            },
        )
        .await
    }

    /// Whether any loaded plugin screens lobby requests (switched on or not: the
    /// policy is checked when they are asked).
    /// Whether a loaded plugin called `name` takes call messages (a shared activity):
    /// messages for any other name are refused before a queue is made for them.
    pub fn takes_call_messages(&self, name: &str) -> bool {
        self.read()
            .get(name)
            .is_some_and(|p| p.grants.manifest.wants(Hook::CallMessages))
    }

    /// Whether a loaded plugin called `name` has call-page web code it was granted
    /// (`web.call-page`): only such a plugin's frames can run a shared activity, so
    /// `activity_*` messages for any other name are refused.
    pub fn runs_activities(&self, name: &str) -> bool {
        self.read().get(name).is_some_and(|p| {
            p.grants.manifest.web.call_page.is_some()
                && p.grants.granted.contains(&Capability::WebCallPage)
        })
    }

    pub fn screens_lobby_requests(&self) -> bool {
        self.read()
            .values()
            .any(|p| p.grants.manifest.wants(Hook::LobbyDecision))
    }

    /// Asks the plugins that screen lobby requests. Each gets its
    /// `decision-deadline-ms`; one that fails or is late gets its operator-set
    /// fallback (allow or flag).
    pub async fn lobby_decision(&self, deps: &PluginDeps, request: &LobbyInfo) -> Verdict {
        let deciders: Vec<Arc<Loaded>> = self
            .read()
            .values()
            .filter(|p| p.grants.manifest.wants(Hook::LobbyDecision))
            .cloned()
            .collect();
        if deciders.is_empty() {
            return Verdict::Allow;
        }
        let policy = deps.policy.get(&deps.store).await.ok();
        let asks = deciders.into_iter().filter(|p| {
            policy
                .as_ref()
                .is_none_or(|pol| pol.plugin_enabled(&p.grants.name))
        });
        let futures = asks.map(|plugin| async move {
            let name = plugin.grants.name.to_string();
            let deadline =
                Duration::from_millis(u64::from(plugin.grants.manifest.limits.decision_deadline_ms));
            let req = request.to_wit();
            let origin = request.origin.clone();
            let answer = self
                .invoke(deps, &plugin, "lobby-decision", None, deadline, move |p, s| {
                    s.data_mut().screened = Some(origin);
                    Box::pin(async move { p.confab_plugin_hooks().call_lobby_decision(s, &req).await })
                })
                .await;
            let decision = match answer {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(plugin = %name, error = %e, fallback = ?plugin.lobby_fallback, "lobby decision failed: using the fallback");
                    match plugin.lobby_fallback {
                        LobbyFallback::Allow => wit_hooks::Decision::Allow,
                        LobbyFallback::Flag => wit_hooks::Decision::Flag(
                            "could not be screened automatically".into(),
                        ),
                    }
                }
            };
            (name, decision)
        });
        let answers = futures_util::future::join_all(futures).await;
        let mut flags = Vec::new();
        for (plugin, decision) in answers {
            match decision {
                wit_hooks::Decision::Allow => {}
                wit_hooks::Decision::Deny(reason) => {
                    return Verdict::Deny {
                        plugin,
                        reason: clip(&reason, 200),
                    };
                }
                wit_hooks::Decision::Flag(reason) => flags.push((plugin, clip(&reason, 200))),
            }
        }
        if flags.is_empty() {
            Verdict::Allow
        } else {
            Verdict::Flag(flags)
        }
    }

    /// Passes an HTTP request to a plugin.
    pub async fn http(
        &self,
        deps: &PluginDeps,
        name: &str,
        request: PluginRequest,
    ) -> Result<PluginResponse, InvokeError> {
        let plugin = self.enabled(deps, name).await?;
        if !plugin.grants.manifest.wants(Hook::Http) {
            return Err(InvokeError::NotHandled(name.into()));
        }
        let deadline = Duration::from_millis(u64::from(plugin.grants.manifest.limits.deadline_ms));
        let user = request.user;
        let req = wit_hooks::HttpRequest {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
            user: request.user,
        };
        let res = self
            .invoke(deps, &plugin, "http", user, deadline, move |p, s| {
                Box::pin(async move { p.confab_plugin_hooks().call_handle_http(s, &req).await })
            })
            .await?;
        Ok(PluginResponse {
            status: res.status,
            headers: res.headers,
            body: res.body,
        })
    }

    /// Passes a participant's message on a plugin's channel to the plugin.
    pub async fn call_message(
        &self,
        deps: &PluginDeps,
        name: &str,
        call: &CallInfo,
        sender: u32,
        payload: Vec<u8>,
    ) -> Result<(), InvokeError> {
        let plugin = self.enabled(deps, name).await?;
        if !plugin.grants.manifest.wants(Hook::CallMessages) {
            return Err(InvokeError::NotHandled(name.into()));
        }
        let deadline = Duration::from_millis(u64::from(plugin.grants.manifest.limits.deadline_ms));
        let call = call.to_wit();
        self.invoke(
            deps,
            &plugin,
            "call-message",
            None,
            deadline,
            move |p, s| {
                Box::pin(async move {
                    p.confab_plugin_hooks()
                        .call_on_call_message(s, &call, sender, &payload)
                        .await
                })
            },
        )
        .await
    }

    /// Fires a plugin's timer now.
    pub async fn fire_timer(
        &self,
        deps: &PluginDeps,
        name: &str,
        timer: &str,
    ) -> Result<(), InvokeError> {
        let plugin = self.enabled(deps, name).await?;
        if !plugin
            .grants
            .manifest
            .timers
            .iter()
            .any(|t| t.name == timer)
        {
            return Err(InvokeError::NotHandled(name.into()));
        }
        let deadline = Duration::from_millis(u64::from(plugin.grants.manifest.limits.deadline_ms));
        let timer = timer.to_string();
        self.invoke(deps, &plugin, "timer", None, deadline, move |p, s| {
            Box::pin(async move { p.confab_plugin_hooks().call_on_timer(s, &timer).await })
        })
        .await
    }

    /// Whether this node makes the run of `plugin`'s `timer` that fell `due`: on a
    /// single node, always; on a node of a cluster, when no other node ran it
    /// since (a cron timer's minute is run once; an `every` timer runs when the
    /// cluster's last run is at least nine tenths of its interval ago, on the
    /// system clock, whichever node's turn came first).
    async fn claim_timer_run(
        &self,
        deps: &PluginDeps,
        plugin: &str,
        timer: &str,
        schedule: &manifest::Schedule,
        due: manifest::Due,
    ) -> bool {
        let Some(node) = &self.cluster_node else {
            return true;
        };
        let (run_at, threshold) = match (schedule, due) {
            (_, manifest::Due::At(minute)) => (minute, minute),
            (manifest::Schedule::Every(every), _) => {
                let now = chrono::Utc::now();
                let gap = chrono::Duration::from_std(every.mul_f64(0.9)).unwrap_or_default();
                (now, now - gap + chrono::Duration::milliseconds(1))
            }
            (manifest::Schedule::Cron(_), manifest::Due::After(_)) => return true,
        };
        match deps
            .store
            .claim_timer_run(plugin, timer, run_at, threshold, node)
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                tracing::debug!(%plugin, %timer, "another node ran this timer");
                false
            }
            Err(err) => {
                tracing::warn!(%plugin, %timer, error = %err, "plugin timer not run: the database did not answer its claim");
                false
            }
        }
    }

    /// Fires timers as their intervals pass, and cron timers at their minutes of the
    /// app's clock, until `shutdown`.
    pub async fn run_timers(deps: PluginDeps, shutdown: crate::shutdown::Shutdown) {
        let mut next: BTreeMap<(String, String), (manifest::Schedule, Option<manifest::Due>)> =
            BTreeMap::new();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait() => return,
            }
            let now = Instant::now();
            let wall = deps.clock.now();
            let timers: Vec<(String, String, manifest::Schedule)> = deps
                .plugins
                .read()
                .values()
                .filter(|p| p.grants.manifest.wants(Hook::Timers))
                .flat_map(|p| {
                    p.grants.manifest.timers.iter().filter_map(|t| {
                        Some((p.grants.name.to_string(), t.name.clone(), t.schedule()?))
                    })
                })
                .collect();
            next.retain(|k, _| timers.iter().any(|(p, t, _)| (p, t) == (&k.0, &k.1)));
            for (plugin, timer, schedule) in timers {
                let entry = next
                    .entry((plugin.clone(), timer.clone()))
                    .or_insert_with(|| (schedule.clone(), schedule.next(now, wall)));
                // A reload changed the schedule: count from now.
                if entry.0 != schedule {
                    *entry = (schedule.clone(), schedule.next(now, wall));
                }
                if let Some(due) = entry.1.filter(|due| due.reached(now, wall)) {
                    entry.1 = schedule.next(now, wall);
                    let deps = deps.clone();
                    tokio::spawn(async move {
                        if !deps
                            .plugins
                            .claim_timer_run(&deps, &plugin, &timer, &schedule, due)
                            .await
                        {
                            return;
                        }
                        match deps.plugins.fire_timer(&deps, &plugin, &timer).await {
                            Ok(()) | Err(InvokeError::Disabled(_)) => {}
                            Err(e) => {
                                tracing::warn!(%plugin, %timer, error = %e, "plugin timer failed")
                            }
                        }
                    });
                }
            }
        }
    }
}

/// Handles a plugin's events one after the other.
pub(super) async fn deliver_events(
    deps: PluginDeps,
    name: String,
    mut events: mpsc::Receiver<Event>,
) {
    while let Some(event) = events.recv().await {
        // Unloaded: stop. Switched off, or the invocation failed: next event.
        if let Err(InvokeError::NotFound(_)) = deps.plugins.deliver(&deps, &name, &event).await {
            return;
        }
    }
}
