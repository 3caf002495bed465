-- The minimum follow age of a FOLLOWERS_ONLY group: how long, in seconds, a user must have
-- followed the owner before JoinGroup admits them; 0 admits every follower. The service keeps
-- it 0 under every other join policy (an update that leaves FOLLOWERS_ONLY resets it), but
-- the table does not insist: a pod still running the previous binary during a rollout changes
-- a group's policy without knowing the column, and a join reads the age only under
-- FOLLOWERS_ONLY, so a stale value there is harmless.

-- A constant default is a catalog change: existing rows are not rewritten.
ALTER TABLE groups.groups ADD COLUMN min_follow_age_seconds integer NOT NULL DEFAULT 0;

-- NOT VALID: every existing row holds the default 0, so there is nothing to check, and
-- checking would scan the whole table under the exclusive lock the ALTER holds. New and
-- updated rows are checked all the same.
ALTER TABLE groups.groups
    ADD CONSTRAINT groups_min_follow_age_seconds_check CHECK (min_follow_age_seconds >= 0) NOT VALID;
