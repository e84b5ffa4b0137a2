//! Integration tests of confab-core, all in one binary (one link step).
//!
//! API and page tests run against the real router on a real SQLite file and on a
//! fresh PostgreSQL database; CLI tests run the `confab` binary.

#![allow(clippy::unwrap_used)] // a test that unwraps fails with the line

mod support;

mod accounts;
mod admission;
mod aiortc;
mod authz;
mod calendar;
mod cli;
mod cluster;
mod e2ee;
mod email_invites;
mod fuzz_corpus;
mod layers;
mod links;
mod mail;
mod media;
mod ops;
mod pages;
mod plugin_build;
mod plugin_calls;
mod plugin_sandbox;
mod plugins;
mod privacy;
mod signaling;
mod smtp;
mod spam_guard;
mod watch_together;
