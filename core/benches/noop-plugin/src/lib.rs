//! A plugin whose hooks all keep the SDK's defaults: the smallest amount of guest
//! work an invocation can do, so that a benchmark of it measures the host.

use confab_plugin_sdk::{Plugin, export_plugin};

struct Noop;

impl Plugin for Noop {}

export_plugin!(Noop);
