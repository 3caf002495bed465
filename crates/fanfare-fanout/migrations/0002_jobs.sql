-- Creator-to-follower fan-out jobs: the job, where its walk of the creator's followers
-- stands (the checkpoint), and which worker holds it (the lease). The table is also the
-- jobs' queue: workers claim runnable rows with FOR UPDATE SKIP LOCKED.

CREATE TABLE fanout.jobs (
    job_id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    creator_id            bigint      NOT NULL CHECK (creator_id > 0),
    idempotency_key       text        NOT NULL CHECK (octet_length(idempotency_key) BETWEEN 1 AND 128),
    kind                  text        NOT NULL CHECK (kind IN ('NEW_GROUP_INVITATION', 'BROADCAST_NOTIFICATION')),
    payload_ref           text        NOT NULL CHECK (octet_length(payload_ref) BETWEEN 1 AND 512),
    rate_limit_per_second integer     NOT NULL CHECK (rate_limit_per_second > 0),
    state                 text        NOT NULL DEFAULT 'PENDING'
                                      CHECK (state IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'CANCELLED')),
    followers_total       bigint      NOT NULL CHECK (followers_total >= 0),
    followers_done        bigint      NOT NULL DEFAULT 0 CHECK (followers_done >= 0),
    -- The checkpoint: the last follower notified, in the (followed_at, follower_id)
    -- descending order of `follows_by_creator`; the walk resumes strictly after it. Both
    -- NULL before the first page.
    cursor_followed_at    timestamptz,
    cursor_follower_id    bigint,
    -- The lease: a token fresh for every claim, which every checkpoint must name (fencing),
    -- and when another worker may take the job over. NULL when nobody holds the job.
    lease_token           uuid,
    lease_expires_at      timestamptz,
    created_at            timestamptz NOT NULL,
    started_at            timestamptz,
    finished_at           timestamptz,
    -- StartFanoutJob is idempotent per (creator, key); the constraint decides races.
    UNIQUE (creator_id, idempotency_key),
    CHECK ((cursor_followed_at IS NULL) = (cursor_follower_id IS NULL)),
    CHECK ((lease_token IS NULL) = (lease_expires_at IS NULL)),
    CHECK ((state IN ('SUCCEEDED', 'CANCELLED')) = (finished_at IS NOT NULL))
);

-- ListFanoutJobs: one creator's jobs newest first, keyset on job_id.
CREATE INDEX jobs_by_creator ON fanout.jobs (creator_id, job_id DESC);

-- Claiming: the oldest unfinished job. Finished jobs (almost all rows, in time) are left
-- out of the index, so a claim scans only the few jobs pending or running.
CREATE INDEX jobs_runnable ON fanout.jobs (job_id) WHERE state IN ('PENDING', 'RUNNING');
