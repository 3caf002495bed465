-- Each log entry carries a random token and its predecessor's (`Update.entry_token`,
-- `previous_entry_token`), so a reader can tell that a log went back and issued a position
-- again — after a restore from backup or an asynchronous failover — instead of silently
-- mixing two histories (docs/security.md, "A log that goes back"). A group's log keeps the
-- token of its latest entry with its counters; appending moves it on.
--
-- Logs written before this migration have no tokens: 0 means "none", and readers skip the
-- check until the next entry. A constant default adds the column without rewriting the table.
ALTER TABLE messages.group_logs ADD COLUMN last_entry_token bigint NOT NULL DEFAULT 0;
