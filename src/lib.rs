//! wavectl: roll a resilient observability and messaging stack out, in validated waves, across a
//! few Linux machines, and roll it back by git commit.
//!
//! The core (plan, render, diff) decides and touches nothing; `cli` is the shell around it.

pub mod backend;
pub mod cli;
pub mod diagnostic;
pub mod diff;
pub mod exit;
pub mod gate;
pub mod inventory;
pub mod load;
pub mod observed;
pub mod plan;
pub mod primitive;
pub mod render;
pub mod repo;
pub mod run;
pub mod scaffold;
pub mod secrets;
pub mod state;
pub mod toml_doc;
pub mod transport;
pub mod units;
pub mod uptime;
pub mod value;
