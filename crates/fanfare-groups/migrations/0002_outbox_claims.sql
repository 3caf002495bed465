-- Claims for the outbox relay. A relay claims a batch of unpublished rows by setting
-- `claimed_until` (now + lease); other relays leave a row alone while its claim is live, and
-- take it over once the lease has expired (the claiming relay died or lost its connection).
-- Publishing sets `published_at`, after which the row is never claimed again.
ALTER TABLE groups.outbox ADD COLUMN claimed_until timestamptz;

-- The live claims, for the claim query: it skips every group that has one, so that a
-- group's rows never overtake each other. A range scan on `claimed_until >= now` that never
-- visits the table; the candidates themselves come from `outbox_unpublished` (0001).
CREATE INDEX outbox_claims ON groups.outbox (claimed_until) INCLUDE (group_id) WHERE published_at IS NULL;
