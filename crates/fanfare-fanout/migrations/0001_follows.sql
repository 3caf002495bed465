-- The fanout service's follow graph, in schema `fanout` (other services keep their own
-- schemas in the same database). Every name is schema-qualified so the SQL does not depend
-- on a connection's search_path.

CREATE SCHEMA IF NOT EXISTS fanout;

-- One row per edge: `follower_id` follows `creator_id` since `followed_at`. The primary key
-- answers "does U follow C" with one probe and makes a repeated follow a no-op.
CREATE TABLE fanout.follows (
    creator_id  bigint      NOT NULL CHECK (creator_id > 0),
    follower_id bigint      NOT NULL CHECK (follower_id > 0),
    followed_at timestamptz NOT NULL,
    PRIMARY KEY (creator_id, follower_id),
    -- The service refuses self-follows first (INVALID_ARGUMENT); this is the last line.
    CHECK (creator_id <> follower_id)
);

-- ListFollowers (and, later, fan-out jobs walking a creator's audience): one creator's
-- followers newest first, keyset on (followed_at, follower_id). A page is an index range
-- scan however many millions of followers the creator has; never OFFSET.
CREATE INDEX follows_by_creator ON fanout.follows (creator_id, followed_at DESC, follower_id DESC);

-- ListFollowing: whom one user follows, newest first, keyset on (followed_at, creator_id).
CREATE INDEX follows_by_follower ON fanout.follows (follower_id, followed_at DESC, creator_id DESC);

-- Follower and following counts, maintained in the same transaction as each edge that is
-- actually created or removed, so GetFollowCounts never counts edges.
--
-- One creator's follower count is a hotspot: a viral creator gaining thousands of followers
-- a second would have every one of those transactions queue on the lock of a single counter
-- row until the previous one commits. So followers are counted in 16 shard rows per user
-- (shard = follower_id % 16) and a user's follower count is the SUM of its rows.
-- `following` is counted in shard 0 alone: it changes at one user's pace (rate-limited), and
-- a single row lets a conditional `following + 1 <= limit` enforce the following limit
-- exactly under concurrency.
--
-- Lock order, in every transaction: the edge row first, then counter rows by ascending
-- (user_id, shard). A follow of B by A and one of A by B touch the same two counter rows;
-- taking them in the same order means neither waits on the other in a cycle.
CREATE TABLE fanout.follow_counts (
    user_id   bigint   NOT NULL CHECK (user_id > 0),
    shard     smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    followers bigint   NOT NULL DEFAULT 0 CHECK (followers >= 0),
    following bigint   NOT NULL DEFAULT 0 CHECK (following >= 0),
    PRIMARY KEY (user_id, shard),
    CHECK (shard = 0 OR following = 0)
);
