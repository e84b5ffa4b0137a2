//! `confab user`: accounts from the command line.

use std::io::BufRead;

use anyhow::{Context, bail};
use clap::Subcommand;
use confab_core::Clock;
use confab_core::accounts::{self, Account, NewUser, Role};
use confab_core::secret::{Secret, random_base62};
use confab_core::store::Store;
use serde::Serialize;

use crate::*;

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user. Without --password-stdin a random password is generated and printed once.
    Create {
        #[arg(long)]
        email: String,
        /// Display name, 1–64 characters.
        #[arg(long)]
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        out: Output,
    },
    /// List users.
    List {
        #[command(flatten)]
        out: Output,
    },
}

pub(crate) async fn user_by_email(store: &Store, email: &str) -> anyhow::Result<Account> {
    let email = email.trim().to_lowercase();
    match store.user_by_email(&email).await? {
        Some(user) => Ok(user.into()),
        None => bail!("no user with email address {email}"),
    }
}

/// A user as the CLI prints it, with the password it generated (once).
#[derive(Serialize)]
pub(crate) struct UserOut {
    #[serde(flatten)]
    pub(crate) account: Account,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) generated_password: Option<String>,
}

pub(crate) async fn user_command(
    store: &Store,
    clock: &dyn Clock,
    cmd: UserCommand,
) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create {
            email,
            name,
            admin,
            password_stdin,
            out,
        } => {
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("cannot read the password from standard input")?;
                let line = line.trim_end_matches(['\r', '\n']).to_string();
                if line.is_empty() {
                    bail!("--password-stdin: standard input had no password");
                }
                (line, None)
            } else {
                let p = random_base62(20);
                (p.clone(), Some(p))
            };
            let role = if admin { Role::Admin } else { Role::Member };
            let account = accounts::create_user(
                store,
                NewUser {
                    email,
                    display_name: name,
                    password: Secret::new(password),
                    role,
                },
                clock.now(),
            )
            .await?;
            let user = UserOut {
                account,
                generated_password: generated,
            };
            print(out, &user, || {
                let a = &user.account;
                let mut text = format!(
                    "Created {} {} <{}> (id {}).",
                    a.role.as_str(),
                    a.display_name,
                    a.email,
                    a.id
                );
                if let Some(p) = &user.generated_password {
                    text.push_str(&format!("\nPassword (shown once): {p}"));
                }
                text
            })
        }
        UserCommand::List { out } => {
            let mut users: Vec<Account> = Vec::new();
            let mut after = None;
            loop {
                let page = store.list_users(after, 500).await?;
                after = page.last().map(|u| u.id);
                let done = page.len() < 500;
                users.extend(page.into_iter().map(Account::from));
                if done {
                    break;
                }
            }
            print(out, &users, || {
                if users.is_empty() {
                    return "No users yet. Create one with: confab user create --admin --email … --name …".into();
                }
                users
                    .iter()
                    .map(|u| {
                        format!(
                            "{:>5}  {:<7} {:<32} {}",
                            u.id,
                            u.role.as_str(),
                            u.email,
                            u.display_name
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}
