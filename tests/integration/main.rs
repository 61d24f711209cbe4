//! The integration tests: one binary (links once), one module per behaviour area.

mod common;
mod diff_snapshots;
mod render_tools;
mod validate_errors;
