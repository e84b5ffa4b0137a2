//! `confab policy`: the organization's restrictions.

use clap::Subcommand;
use confab_core::Clock;
use confab_core::policy::{PolicyCache, PolicyPatch};
use confab_core::store::Store;

use crate::*;

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    Show {
        #[command(flatten)]
        out: Output,
    },
    Set {
        #[arg(long, value_enum)]
        guest_access: Option<Switch>,
        #[arg(long, value_enum)]
        member_link_creation: Option<Switch>,
        /// Turn a plugin off instance-wide (repeatable).
        #[arg(long)]
        disable_plugin: Vec<String>,
        /// Turn a plugin back on (repeatable).
        #[arg(long)]
        enable_plugin: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
}

pub(crate) async fn policy_command(
    store: &Store,
    clock: &dyn Clock,
    cmd: PolicyCommand,
) -> anyhow::Result<()> {
    let cache = PolicyCache::default();
    let (policy, out) = match cmd {
        PolicyCommand::Show { out } => (cache.get(store).await?, out),
        PolicyCommand::Set {
            guest_access,
            member_link_creation,
            disable_plugin,
            enable_plugin,
            out,
        } => {
            let current = cache.get(store).await?;
            let disabled_plugins =
                (!disable_plugin.is_empty() || !enable_plugin.is_empty()).then(|| {
                    let mut list = current.disabled_plugins.clone();
                    list.extend(disable_plugin);
                    list.retain(|p| !enable_plugin.contains(p));
                    list
                });
            let on = |s: Switch| matches!(s, Switch::On);
            let patch = PolicyPatch {
                guest_access: guest_access.map(on),
                member_link_creation: member_link_creation.map(on),
                disabled_plugins,
            };
            (cache.update(store, patch, clock.now()).await?, out)
        }
    };
    print(out, &policy, || {
        let word = |b: bool| if b { "on" } else { "off" };
        format!(
            "guest access:          {}\nmember link creation:  {}\ndisabled plugins:      {}",
            word(policy.guest_access),
            word(policy.member_link_creation),
            if policy.disabled_plugins.is_empty() {
                "none".to_string()
            } else {
                policy.disabled_plugins.join(", ")
            }
        )
    })
}
