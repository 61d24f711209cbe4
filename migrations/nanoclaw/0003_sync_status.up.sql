-- SQLite <-> ChromaDB sync status tracking (seed 2.5).
CREATE TABLE sync_status (
  document_id TEXT PRIMARY KEY,
  sqlite_version INTEGER NOT NULL,
  chroma_version INTEGER,
  synced_at TEXT
);
