//! The calendar plugin: call links in calendar events.
//!
//! - [`ics`]: the ICS engine (pure Rust, no plugin capability): put a link into the
//!   events of an `.ics` file from any calendar, write scheduled calls and feeds;
//! - the plugin itself (feature `plugin`, on by default): HTTP routes under
//!   `/p/calendar/` around the engine.

pub mod ics;

#[cfg(feature = "plugin")]
mod plugin;
