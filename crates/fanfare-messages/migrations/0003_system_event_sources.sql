-- Relayed events are idempotent on (source, outbox id), not on the outbox id alone, and a
-- repeat is compared by content (docs/security.md, "Who may relay events"): a caller cannot
-- claim another source's outbox ids, and a reused id with other content is refused.
--
-- The source is the relaying caller's name (`groups`). Rows recorded before this migration
-- were all relayed by the groups service: they get source 'groups' and no digest (a repeat of
-- one of them is answered as a duplicate, as before). The default keeps inserts of the
-- previous release working during a rolling upgrade; those rows come from groups too.
ALTER TABLE messages.system_events
    ADD COLUMN source text NOT NULL DEFAULT 'groups',
    ADD COLUMN content_digest bytea;

ALTER TABLE messages.system_events DROP CONSTRAINT system_events_pkey;
ALTER TABLE messages.system_events ADD CONSTRAINT system_events_pkey PRIMARY KEY (source, outbox_id);
