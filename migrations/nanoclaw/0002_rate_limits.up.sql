-- Rate limiter (seed 2.6): 10 messages per minute per user.
CREATE TABLE rate_limits (
  user_id TEXT NOT NULL,
  window_start TEXT NOT NULL,
  count INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, window_start)
);
