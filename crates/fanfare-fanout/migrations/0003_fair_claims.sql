-- Claims are fair between creators (docs/fanout.md, "Fan-out jobs"): a claim counts each
-- candidate's creator's jobs running under a live lease. This index keeps that count to the
-- creator's few unfinished jobs, not every job they ever ran.
CREATE INDEX jobs_unfinished_by_creator ON fanout.jobs (creator_id) WHERE state IN ('PENDING', 'RUNNING');
