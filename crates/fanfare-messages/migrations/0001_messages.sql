-- The messages service's tables, all in schema `messages` (other services keep their own
-- schemas in the same database). Every name is schema-qualified so the SQL does not depend
-- on a connection's search_path.
--
-- Messages are never removed, only turned into tombstones (content cleared), so a group's
-- message_seqs 1..=last_message_seq all exist: "does message n exist" is a range check on
-- the group's log row, not a lookup.

CREATE SCHEMA IF NOT EXISTS messages;

-- One row per group that ever had a write: the counters that make event_seq and
-- message_seq gapless. `apply` locks these rows (FOR UPDATE, ascending group_id, once per
-- group per batch) before anything else, which serialises writers of one group and orders
-- everything they read after it.
CREATE TABLE messages.group_logs (
    group_id                  bigint PRIMARY KEY CHECK (group_id > 0),
    last_event_seq            bigint NOT NULL DEFAULT 0 CHECK (last_event_seq >= 0),
    last_message_seq          bigint NOT NULL DEFAULT 0 CHECK (last_message_seq >= 0),
    -- Raised by pruning; reads from before it must resynchronise.
    oldest_retained_event_seq bigint NOT NULL DEFAULT 1 CHECK (oldest_retained_event_seq >= 1)
);

-- Messages and the update log are the two tables that grow with every post, without bound.
-- Both are hash-partitioned by group_id (16 partitions): every query names one group, so it
-- touches one partition whose indexes stay a sixteenth of the size (hot index pages fit in
-- memory longer, vacuum works on smaller heaps in parallel), and the same key is what a
-- distributed Postgres (Citus) would shard on when one primary is not enough. Hash, not
-- range: load follows groups, not time, and one group's rows stay in one partition.
CREATE TABLE messages.messages (
    group_id             bigint      NOT NULL CHECK (group_id > 0),
    message_seq          bigint      NOT NULL CHECK (message_seq > 0),
    message_id           uuid        NOT NULL,
    event_seq            bigint      NOT NULL CHECK (event_seq > 0),
    sender_id            bigint      NOT NULL CHECK (sender_id > 0),
    client_message_id    text        NOT NULL,
    -- SHA-256 of the content as first posted: an idempotent retry is compared against it,
    -- so a retry still matches after the message was edited or deleted.
    content_digest       bytea       NOT NULL,
    text                 text        NOT NULL,
    -- prost-encoded list of `fanfare.common.v1.Attachment` (empty when none): attachments
    -- are only ever read and written with their message, never queried.
    attachments          bytea       NOT NULL,
    reply_to_message_seq bigint      CHECK (reply_to_message_seq > 0),
    mentions             bigint[]    NOT NULL,
    mentions_all         boolean     NOT NULL,
    created_at           timestamptz NOT NULL,
    edited_at            timestamptz,
    version              integer     NOT NULL CHECK (version >= 1),
    deleted_at           timestamptz,
    pinned_at            timestamptz,
    PRIMARY KEY (group_id, message_seq)
) PARTITION BY HASH (group_id);

-- SendMessage idempotency on (group, sender, client_message_id). Keys are kept as long as
-- the message, which more than satisfies the promised 24 hours. It also serves purges
-- (one sender's messages in a group).
CREATE UNIQUE INDEX messages_idempotency ON messages.messages (group_id, sender_id, client_message_id);

-- GetMessages by id.
CREATE INDEX messages_by_id ON messages.messages (group_id, message_id);

-- The pin limit counts a group's pinned messages.
CREATE INDEX messages_pinned ON messages.messages (group_id) WHERE pinned_at IS NOT NULL;

-- The update log: the encoded `fanfare.common.v1.Update` of every change, by
-- (group_id, event_seq). Partitioned like messages, for the same reasons.
CREATE TABLE messages.updates (
    group_id   bigint      NOT NULL CHECK (group_id > 0),
    event_seq  bigint      NOT NULL CHECK (event_seq > 0),
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (group_id, event_seq)
) PARTITION BY HASH (group_id);

-- Pruning finds entries by age. BRIN: rows arrive in time order, so a few pages of block
-- ranges serve the range delete, and appends pay almost nothing to maintain it.
CREATE INDEX updates_created_at ON messages.updates USING brin (created_at);

DO $$
BEGIN
    FOR remainder IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE messages.messages_p%s PARTITION OF messages.messages '
            'FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            lpad(remainder::text, 2, '0'), remainder);
        EXECUTE format(
            'CREATE TABLE messages.updates_p%s PARTITION OF messages.updates '
            'FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            lpad(remainder::text, 2, '0'), remainder);
    END LOOP;
END
$$;

-- Who reacted with what: one row per (message, user, emoji).
CREATE TABLE messages.reactions (
    group_id    bigint      NOT NULL,
    message_seq bigint      NOT NULL,
    user_id     bigint      NOT NULL CHECK (user_id > 0),
    emoji       text        NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (group_id, message_seq, user_id, emoji)
);

-- Reaction totals per (message, emoji), kept beside the rows: a message of a broadcast
-- group can carry a million reactions, and every tap and every read needs the totals
-- without counting them. Rows exist only while count > 0; writers of a group are
-- serialised by its log row, so the counts stay exact.
CREATE TABLE messages.reaction_counts (
    group_id    bigint NOT NULL,
    message_seq bigint NOT NULL,
    emoji       text   NOT NULL,
    count       bigint NOT NULL CHECK (count > 0),
    PRIMARY KEY (group_id, message_seq, emoji)
);

-- Each user's read marker per group. Unread counts are computed on read from it.
CREATE TABLE messages.read_markers (
    group_id         bigint NOT NULL,
    user_id          bigint NOT NULL CHECK (user_id > 0),
    read_message_seq bigint NOT NULL CHECK (read_message_seq >= 0),
    PRIMARY KEY (group_id, user_id)
);

-- Who each live message mentions, so a user's unread mentions are one index range count
-- (user_id, message_seq > marker). An @all message has one row for user_id 0 instead of
-- one per member: posting to a broadcast group of a million costs one row. A tombstone
-- mentions nobody: deleting a message removes its rows.
CREATE TABLE messages.message_mentions (
    group_id    bigint NOT NULL,
    user_id     bigint NOT NULL CHECK (user_id >= 0),
    message_seq bigint NOT NULL,
    PRIMARY KEY (group_id, user_id, message_seq)
);

-- When each sender last posted in each group, for slow mode (recorded whether or not slow
-- mode is on, so turning it on takes effect at once).
CREATE TABLE messages.sender_state (
    group_id       bigint      NOT NULL,
    user_id        bigint      NOT NULL CHECK (user_id > 0),
    last_posted_at timestamptz NOT NULL,
    PRIMARY KEY (group_id, user_id)
);

-- Which groups-outbox rows were appended to a log (AppendSystemUpdates is idempotent on
-- the groups outbox id), and where.
CREATE TABLE messages.system_events (
    outbox_id bigint PRIMARY KEY,
    group_id  bigint NOT NULL,
    event_seq bigint NOT NULL
);

-- Committed updates not yet published to the bus (the transactional outbox). The relay
-- claims rows with FOR UPDATE SKIP LOCKED under a lease, publishes, and deletes them; the
-- payload stays in messages.updates, and pruning keeps every update still waiting here.
-- No index beyond the key: the table stays small while the relay keeps up, and every
-- index would be one more write per update.
CREATE TABLE messages.outbox (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id      bigint      NOT NULL,
    event_seq     bigint      NOT NULL,
    claimed_until timestamptz
);
