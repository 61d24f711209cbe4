//! The migration-engine seam: every host-side migration operation (observe, apply one, revert
//! one from the stored down SQL, accept, resolve, baseline) and the parsing of what the
//! scripts printed, behind one trait. The engine of a database is chosen here, in [`of`], from
//! the migration set's `engine`; a new engine is a new file implementing [`MigrationEngine`]
//! and one arm there.

use crate::backend::observe::absolute;
use crate::backend::sqlite::{self, Listing};
use crate::plan::schema::Engine;
use crate::primitive::{DatabaseSpec, MigrationSpec};

/// What one migration engine does on a host. Every script is a whole `sh` script (as the
/// sqlite builders return them) that the callers run in a subshell; `root` is the host root.
pub trait MigrationEngine: Sync {
    /// Lists what the database records without changing it, in the line format of
    /// [`sqlite::parse_list`] (`db ok|missing`, `schema`, `dirty`, `applied ...`, `error ...`).
    fn list_script(&self, root: &str, db: &DatabaseSpec) -> String;
    /// Applies migration `m` and records it, in one transaction (no-transaction migrations
    /// behind the dirty marker).
    fn apply_script(
        &self,
        root: &str,
        db: &DatabaseSpec,
        m: &MigrationSpec,
        generation: u64,
        commit: Option<&str>,
    ) -> String;
    /// Reverts recorded migration `id` with the down SQL stored in the database.
    fn revert_script(&self, root: &str, db: &DatabaseSpec, id: u32) -> String;
    /// Records the plan's checksums and down SQL of applied migration `m`.
    fn accept_script(&self, root: &str, db: &DatabaseSpec, m: &MigrationSpec) -> String;
    /// Clears the dirty marker.
    fn resolve_script(&self, root: &str, db: &DatabaseSpec) -> String;
    /// Records 1..=`up_to_id` as applied without running them.
    fn baseline_script(&self, root: &str, db: &DatabaseSpec, up_to_id: u32) -> String;
    /// One message naming `file` (and its line when known) from a failed script's stderr.
    fn parse_failure(&self, stderr: &str, file: &str) -> String;
    /// The program the scripts run on the host (the missing-program check names it).
    fn program(&self) -> &'static str;
}

/// What any engine's [`MigrationEngine::list_script`] printed: every engine prints the same
/// listing lines, so observe parses them once, whatever the engine.
pub fn parse_list(stdout: &str) -> Result<Listing, sqlite::SqliteError> {
    sqlite::parse_list(stdout)
}

/// The one place an engine is chosen.
pub fn of(engine: Engine) -> &'static dyn MigrationEngine {
    match engine {
        Engine::Sqlite => &Sqlite,
        Engine::Postgres => &crate::backend::postgres::Postgres,
    }
}

/// The engine of a database.
pub fn for_db(db: &DatabaseSpec) -> &'static dyn MigrationEngine {
    of(db.engine)
}

/// SQLite: the builders of `backend::sqlite`, on the database file under the root.
pub struct Sqlite;

impl MigrationEngine for Sqlite {
    fn list_script(&self, root: &str, db: &DatabaseSpec) -> String {
        sqlite::list_script(&absolute(root, &db.path))
    }

    fn apply_script(
        &self,
        root: &str,
        db: &DatabaseSpec,
        m: &MigrationSpec,
        generation: u64,
        commit: Option<&str>,
    ) -> String {
        sqlite::apply_script(&absolute(root, &db.path), m, generation, commit)
    }

    fn revert_script(&self, root: &str, db: &DatabaseSpec, id: u32) -> String {
        sqlite::revert_script(&absolute(root, &db.path), id)
    }

    fn accept_script(&self, root: &str, db: &DatabaseSpec, m: &MigrationSpec) -> String {
        sqlite::accept_script(&absolute(root, &db.path), m)
    }

    fn resolve_script(&self, root: &str, db: &DatabaseSpec) -> String {
        sqlite::resolve_script(&absolute(root, &db.path))
    }

    fn baseline_script(&self, root: &str, db: &DatabaseSpec, up_to_id: u32) -> String {
        sqlite::baseline_script(&absolute(root, &db.path), up_to_id, &db.migrations)
    }

    fn parse_failure(&self, stderr: &str, file: &str) -> String {
        sqlite::parse_failure(stderr, file)
    }

    fn program(&self) -> &'static str {
        "sqlite3"
    }
}
