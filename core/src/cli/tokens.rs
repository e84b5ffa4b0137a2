//! `confab token`: API tokens.

use anyhow::bail;
use clap::Subcommand;
use confab_core::Clock;
use confab_core::accounts::{self, TokenInfo};
use confab_core::store::Store;
use serde::Serialize;

use crate::*;

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Create an API token for a user; the token is printed once.
    Create {
        /// The user's email address.
        #[arg(long)]
        user: String,
        /// What the token is for.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// List a user's tokens.
    List {
        #[arg(long)]
        user: String,
        #[command(flatten)]
        out: Output,
    },
    /// Revoke a token by its id.
    Revoke {
        #[arg(long)]
        user: String,
        id: i64,
        #[command(flatten)]
        out: Output,
    },
}

/// A token as the CLI prints it, with its secret only when just created.
#[derive(Serialize)]
pub(crate) struct TokenOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    #[serde(flatten)]
    pub(crate) info: TokenInfo,
}

pub(crate) async fn token_command(
    store: &Store,
    clock: &dyn Clock,
    cmd: TokenCommand,
) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create { user, name, out } => {
            let account = user_by_email(store, &user).await?;
            let issued = accounts::issue_token(store, account.id, &name, clock.now()).await?;
            let token = TokenOut {
                token: Some(issued.secret.expose().to_string()),
                info: issued.record.into(),
            };
            print(out, &token, || {
                format!(
                    "{}\nToken {} (id {}) for {}. It is shown only this once; use it as: Authorization: Bearer <token>",
                    issued.secret.expose(),
                    token.info.name,
                    token.info.id,
                    account.email
                )
            })
        }
        TokenCommand::List { user, out } => {
            let account = user_by_email(store, &user).await?;
            let tokens: Vec<TokenInfo> = store
                .tokens_of(account.id)
                .await?
                .into_iter()
                .map(Into::into)
                .collect();
            print(out, &tokens, || {
                tokens
                    .iter()
                    .map(|t| {
                        let state = match (&t.revoked_at, &t.last_used_at) {
                            (Some(_), _) => "revoked".to_string(),
                            (None, Some(at)) => format!("last used {at}"),
                            (None, None) => "never used".to_string(),
                        };
                        format!("{:>5}  {}…  {:<24} {}", t.id, t.prefix, t.name, state)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        TokenCommand::Revoke { user, id, out } => {
            let account = user_by_email(store, &user).await?;
            let Some(token) = store.revoke_token(account.id, id, clock.now()).await? else {
                bail!("{} has no token with id {id}", account.email);
            };
            let token = TokenInfo::from(token);
            print(out, &token, || {
                format!("Revoked token {} ({}).", token.id, token.name)
            })
        }
    }
}
