-- The outbox becomes recovery-only (docs/messages.md, "From commit to the bus"): the pod that
-- commits an update publishes it itself and then deletes its row in a batch; a row left
-- here belongs to a pod that crashed or was cut off between commit and publish, and is
-- republished by whichever pod holds the lease of its lane.
--
-- A group's rows all sit in one of 64 lanes (group_id % 64; OUTBOX_LANES and outbox_lane in
-- crates/fanfare-messages/src/domain/mod.rs compute the same); the key leads with the lane,
-- so one index serves the recovery read of a lane in (group, event_seq) order and the
-- batched deletes. Inserts that name only (group_id, event_seq), as the previous release
-- wrote them, still work during a rolling upgrade: lane is computed, committed_at defaults.
ALTER TABLE messages.outbox RENAME TO outbox_before_lanes;

CREATE TABLE messages.outbox (
    group_id     bigint      NOT NULL,
    event_seq    bigint      NOT NULL,
    lane         smallint    GENERATED ALWAYS AS ((group_id % 64)::smallint) STORED,
    committed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT outbox_by_lane_pkey PRIMARY KEY (lane, group_id, event_seq)
) WITH (
    -- Rows live milliseconds: vacuum often so dead ones do not pile up under the index.
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000
);

-- Whatever the previous release left unpublished is recovered by the lanes (with now() as
-- its commit time: republished once the recovery grace has passed).
INSERT INTO messages.outbox (group_id, event_seq)
SELECT group_id, event_seq FROM messages.outbox_before_lanes
ON CONFLICT DO NOTHING;

DROP TABLE messages.outbox_before_lanes;

-- One lease per lane: the pod recovering it and until when. A lane is taken only when it
-- holds rows older than the recovery grace, and given back when drained.
CREATE TABLE messages.outbox_lanes (
    lane         smallint PRIMARY KEY CHECK (lane >= 0 AND lane < 64),
    owner        uuid,
    leased_until timestamptz
);

INSERT INTO messages.outbox_lanes (lane) SELECT generate_series(0, 63);
