-- Queue state persistence (seed 2.2): a restart loses no queued message.
CREATE TABLE queue_messages (
  id INTEGER PRIMARY KEY,
  chat_id TEXT NOT NULL,
  payload TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
  enqueued_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE INDEX queue_messages_state ON queue_messages (state, enqueued_at);
