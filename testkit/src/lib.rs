//! Synthetic participants for Confab's SFU.
//!
//! A [`Participant`] is what a browser is to the SFU, without a browser: a
//! *publish* peer connection that offers Opus audio and a VP8 camera in three
//! simulcast layers (`q`, `h`, `f`) at realistic rates and packet sizes, and a
//! *subscribe* peer connection that answers the server's offers and receives
//! everyone else. It is sans-IO (webrtc-rs's `rtc` core, time passed in), so the
//! same code drives the SFU's in-memory tests and the UDP load generator
//! (`examples/loadgen`).
//!
//! Every payload carries a [`Stamp`] (publisher, layer, send time), so a receiver
//! measures loss and added latency without a shared clock beyond the process's own.

pub mod participant;
pub mod stamp;

pub use participant::{Datagram, LayerSpec, Participant, Profile, ReceiveStats};
pub use stamp::Stamp;
