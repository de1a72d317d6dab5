-- A password reset ends every session begun before it: a session remembers its account's
-- epoch when it starts (engine::auth::SESSION_EPOCH_KEY), and a reset moves the epoch on.
ALTER TABLE accounts ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
