//! The integration tests: one binary (links once), one module per behaviour area.

mod alerts_lab;
mod alerts_validate;
mod apply_lab;
mod common;
mod connections_lab;
mod core_is_pure;
mod diff_snapshots;
mod drills_lab;
mod gates_lab;
mod hostile_plans;
mod init_lab;
mod lab;
mod local_transport;
mod many_hosts;
mod migrations_lab;
mod nats_cluster;
mod pm2_lab;
mod postgres;
mod postgres_lab;
mod render_tools;
mod report_lab;
mod rollback_lab;
mod services_lab;
mod sqlite_backend;
mod validate_errors;
