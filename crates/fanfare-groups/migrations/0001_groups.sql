-- The groups service's tables, all in schema `groups` (other services keep their own
-- schemas in the same database). Enum columns hold the stable codes of `domain::values`
-- (`GroupKind::code()`, `Role::code()`, ...); CHECK constraints refuse any other value.
-- Every name is schema-qualified so the SQL does not depend on a connection's search_path.

CREATE SCHEMA IF NOT EXISTS groups;

CREATE TABLE groups.groups (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind              smallint    NOT NULL CHECK (kind IN (1, 2, 3)),
    title             text        NOT NULL,
    description       text        NOT NULL,
    avatar_ref        text        NOT NULL,
    owner_id          bigint      NOT NULL CHECK (owner_id > 0),
    join_policy       smallint    NOT NULL CHECK (join_policy IN (1, 2, 3, 4)),
    slow_mode_seconds integer     NOT NULL CHECK (slow_mode_seconds >= 0),
    history_visible   boolean     NOT NULL,
    post_policy       smallint    NOT NULL CHECK (post_policy IN (1, 2)),
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    archived_at       timestamptz
);

CREATE TABLE groups.members (
    group_id    bigint      NOT NULL REFERENCES groups.groups (id),
    user_id     bigint      NOT NULL CHECK (user_id > 0),
    role        smallint    NOT NULL CHECK (role IN (1, 2, 3)),
    joined_at   timestamptz NOT NULL,
    muted_until timestamptz,
    PRIMARY KEY (group_id, user_id)
);

-- ListUserGroups: one user's memberships, newest first, keyset on (joined_at, group_id).
CREATE INDEX members_by_user ON groups.members (user_id, joined_at DESC, group_id DESC);

-- ListMembers filtered by role (the admins of a million-member channel) without a scan.
CREATE INDEX members_by_role ON groups.members (group_id, role, user_id);

-- Exactly one owner per group: a transfer demotes the old owner before promoting the new.
CREATE UNIQUE INDEX members_one_owner ON groups.members (group_id) WHERE role = 1;

-- Member counts, sharded: a million joins into one BROADCAST group would all queue on the
-- lock of a single counter row, so BROADCAST groups count in 16 rows (shard = user_id % 16)
-- and a group's member count is the SUM of its rows. CHAT and COMMUNITY groups have a
-- member limit and count in shard 0 alone, where a conditional
-- `UPDATE ... WHERE count + n <= limit` enforces the limit exactly under concurrency.
CREATE TABLE groups.member_counts (
    group_id bigint   NOT NULL REFERENCES groups.groups (id),
    shard    smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    count    bigint   NOT NULL CHECK (count >= 0),
    PRIMARY KEY (group_id, shard)
);

-- How many groups each user belongs to; a conditional increment enforces the user's
-- group limit without counting their memberships.
CREATE TABLE groups.user_group_counts (
    user_id bigint PRIMARY KEY CHECK (user_id > 0),
    count   bigint NOT NULL CHECK (count >= 0)
);

-- One row per (group, user): a new ban replaces the old one; `until` NULL is permanent,
-- and an expired row stays until replaced but no longer counts.
CREATE TABLE groups.bans (
    group_id  bigint      NOT NULL REFERENCES groups.groups (id),
    user_id   bigint      NOT NULL CHECK (user_id > 0),
    banned_by bigint      NOT NULL CHECK (banned_by > 0),
    reason    text        NOT NULL,
    banned_at timestamptz NOT NULL,
    until     timestamptz,
    PRIMARY KEY (group_id, user_id)
);

CREATE TABLE groups.join_requests (
    group_id     bigint      NOT NULL REFERENCES groups.groups (id),
    user_id      bigint      NOT NULL CHECK (user_id > 0),
    requested_at timestamptz NOT NULL,
    PRIMARY KEY (group_id, user_id)
);

-- ListJoinRequests: oldest first, keyset on (requested_at, user_id).
CREATE INDEX join_requests_by_time ON groups.join_requests (group_id, requested_at, user_id);

CREATE TABLE groups.invites (
    code       text        PRIMARY KEY,
    group_id   bigint      NOT NULL REFERENCES groups.groups (id),
    created_by bigint      NOT NULL CHECK (created_by > 0),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    max_uses   integer     NOT NULL CHECK (max_uses >= 0),
    use_count  integer     NOT NULL CHECK (use_count >= 0),
    revoked_at timestamptz,
    -- max_uses 0 is unlimited.
    CHECK (max_uses = 0 OR use_count <= max_uses)
);

-- Encoded `fanfare.common.v1.GroupEvent`s written in the same transaction as the change;
-- the relay publishes them and sets `published_at`.
CREATE TABLE groups.outbox (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id     bigint      NOT NULL,
    payload      bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    published_at timestamptz
);

-- The relay's queue: unpublished rows in id order.
CREATE INDEX outbox_unpublished ON groups.outbox (id) WHERE published_at IS NULL;
