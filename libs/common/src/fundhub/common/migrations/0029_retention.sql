-- Bounded for years: the inbox keeps an id for its dedupe window, the outbox a published row for
-- a short while; fundhub.common.retention deletes what is older, oldest first, a batch at a time.
-- Each purge walks one of these indexes from its old end and touches only the rows it deletes:
-- never a scan of the table, however long its history.
--
-- Not partitions: a partitioned table's unique key must hold the partition column, so the
-- inbox's (consumer, message_id) could no longer be a constraint (exactly-once would become a
-- check-then-insert across partitions, racing at every boundary).

CREATE INDEX inbox_processed_at ON inbox (processed_at);
-- The relay's UPDATE already changes an indexed column (the outbox_unpublished predicate), so it
-- was never a HOT update: this index adds one small index insert, not a heap rewrite.
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;
