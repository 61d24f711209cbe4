//! The plan: its schema, loading with positions, validation, waves and expansion to primitives.

pub mod expand;
pub mod health;
pub mod instances;
pub mod load;
pub mod migration_rules;
pub mod migrations;
pub mod resource;
pub mod schema;
pub mod sql_lex;
pub mod validate;
pub mod waves;
