//! `confab link`: call links.

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use confab_core::Clock;
use confab_core::accounts::Account;
use confab_core::links::{self, LinkView, LinkWithSecret, NewLink, ScheduleInput};
use confab_core::policy::PolicyCache;
use confab_core::store::{LinkFilter, Store};

use crate::*;

#[derive(Subcommand)]
pub(crate) enum LinkCommand {
    /// Create a link owned by a user; prints the full link with its secret, once.
    Create {
        /// The owner's email address.
        #[arg(long)]
        owner: String,
        #[arg(long)]
        title: String,
        #[arg(long)]
        description: Option<String>,
        /// Scheduled start (RFC 3339, e.g. 2026-12-01T10:00:00+01:00).
        #[arg(long, requires = "end")]
        start: Option<String>,
        /// Scheduled end (RFC 3339).
        #[arg(long, requires = "start")]
        end: Option<String>,
        /// IANA time zone of the schedule (default UTC).
        #[arg(long, requires = "start")]
        time_zone: Option<String>,
        /// Recurrence rule, e.g. FREQ=WEEKLY;BYDAY=MO.
        #[arg(long, requires = "start")]
        rrule: Option<String>,
        /// Let guests in without approval.
        #[arg(long)]
        no_approval: bool,
        /// Make signed-in members (other than the owner) wait in the lobby too.
        #[arg(long)]
        members_need_approval: bool,
        /// 1–32 (default 32).
        #[arg(long)]
        max_participants: Option<i32>,
        #[command(flatten)]
        out: Output,
    },
    /// List a user's links, newest first.
    List {
        #[arg(long)]
        owner: String,
        #[arg(long, value_enum, default_value_t = StatusArg::Active)]
        status: StatusArg,
        /// How many to show.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[command(flatten)]
        out: Output,
    },
    /// Show a link.
    Show {
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Revoke a link: it stops working for good.
    Revoke {
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Give a link a new id and a new secret, printed once; the old link stops working.
    Rotate {
        id: String,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum StatusArg {
    Active,
    Revoked,
    All,
}

pub(crate) fn describe_link(link: &LinkView) -> String {
    let mut text = format!(
        "{}\n  title:   {}\n  status:  {}\n  id:      {}",
        link.url, link.title, link.status, link.id
    );
    if let Some(d) = &link.description {
        text.push_str(&format!("\n  about:   {d}"));
    }
    if let Some(s) = &link.schedule {
        text.push_str(&format!(
            "\n  when:    {} – {} ({})",
            s.start, s.end, s.time_zone
        ));
        if let Some(r) = &s.rrule {
            text.push_str(&format!("\n  repeats: {r}"));
        }
    }
    text.push_str(&format!(
        "\n  guests:  {}, up to {} people",
        if link.policy.guests_need_approval {
            "wait for approval"
        } else {
            "join directly"
        },
        link.policy.max_participants
    ));
    if link.policy.members_need_approval {
        text.push_str("\n  members: wait for approval");
    }
    text
}

/// Finds a link by id and acts as its owner.
pub(crate) async fn link_and_owner(store: &Store, id: &str) -> anyhow::Result<Account> {
    let Some(link) = links::LinkId::parse(id) else {
        bail!("{id:?} is not a link id")
    };
    let Some(link) = store.link_by_public_id(link.as_str()).await? else {
        bail!("no link with id {id}")
    };
    let Some(owner) = store.user_by_id(link.owner_id).await? else {
        bail!("the link's owner no longer exists")
    };
    Ok(owner.into())
}

pub(crate) async fn link_command(
    store: &Store,
    clock: &dyn Clock,
    public_url: &str,
    cmd: LinkCommand,
) -> anyhow::Result<()> {
    let now = clock.now();
    // Creating and rotating make a new secret: printed now, kept nowhere.
    let (link, out, new_secret) = match cmd {
        LinkCommand::Create {
            owner,
            title,
            description,
            start,
            end,
            time_zone,
            rrule,
            no_approval,
            members_need_approval,
            max_participants,
            out,
        } => {
            let owner = user_by_email(store, &owner).await?;
            let schedule = match (start, end) {
                (Some(start), Some(end)) => Some(ScheduleInput {
                    start: start
                        .parse()
                        .with_context(|| format!("--start {start:?} is not an RFC 3339 time"))?,
                    end: end
                        .parse()
                        .with_context(|| format!("--end {end:?} is not an RFC 3339 time"))?,
                    time_zone,
                    rrule,
                }),
                _ => None,
            };
            let input = NewLink {
                title,
                description,
                schedule,
                guests_need_approval: Some(!no_approval),
                members_need_approval: Some(members_need_approval),
                max_participants,
            };
            let policy = PolicyCache::default().get(store).await?;
            (
                links::create(store, &policy, &owner, input, now).await?,
                out,
                true,
            )
        }
        LinkCommand::List {
            owner,
            status,
            limit,
            out,
        } => {
            let owner = user_by_email(store, &owner).await?;
            let filter = match status {
                StatusArg::Active => LinkFilter::Active,
                StatusArg::Revoked => LinkFilter::Revoked,
                StatusArg::All => LinkFilter::All,
            };
            let (items, _) =
                links::list(store, &owner, filter, None, limit.clamp(1, 10_000)).await?;
            let views: Vec<LinkView> = items.iter().map(|l| LinkView::new(l, public_url)).collect();
            return print(out, &views, || {
                if views.is_empty() {
                    return format!("{} has no links.", owner.email);
                }
                views
                    .iter()
                    .map(|l| format!("{}  {}", l.url, l.title))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        LinkCommand::Show { id, out } => {
            let owner = link_and_owner(store, &id).await?;
            (links::owned(store, &owner, &id).await?, out, false)
        }
        LinkCommand::Revoke { id, out } => {
            let owner = link_and_owner(store, &id).await?;
            (links::revoke(store, &owner, &id, now).await?, out, false)
        }
        LinkCommand::Rotate { id, out } => {
            let owner = link_and_owner(store, &id).await?;
            (links::rotate(store, &owner, &id, now).await?, out, true)
        }
    };
    if new_secret {
        let shared = LinkWithSecret::generate(&link, public_url);
        return print(out, &shared, || {
            format!(
                "{}\n  The part after #k= is the link's secret, shown only now: Confab keeps no copy.\n  Share the whole link: the call's media keys are made from the secret.",
                describe_link(&shared.link)
            )
        });
    }
    let view = LinkView::new(&link, public_url);
    print(out, &view, || describe_link(&view))
}
