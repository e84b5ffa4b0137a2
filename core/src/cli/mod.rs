//! The `confab` command's groups of subcommands, one file each; `main.rs` has the
//! top-level command, `serve` and the shared output helpers.

pub(crate) mod links;
pub(crate) mod mail;
pub(crate) mod nodes;
pub(crate) mod plugins;
pub(crate) mod policy;
pub(crate) mod privacy;
pub(crate) mod tokens;
pub(crate) mod users;

pub(crate) use links::*;
pub(crate) use mail::*;
pub(crate) use nodes::*;
pub(crate) use plugins::*;
pub(crate) use policy::*;
pub(crate) use privacy::*;
pub(crate) use tokens::*;
pub(crate) use users::*;
