-- `event_lookup` fed by the sink instead of a view over every `events` insert.
--
-- Migration 0007's view ran an ARRAY JOIN of seven keys and a GROUP BY over each `events`
-- insert: about a sixth of ClickHouse's work per ingested event. The sink now folds a flush's
-- keys itself (one row per kind, key and workspace, spanning the flush's first to last time)
-- and inserts them, after the events and before their dedup keys, into this Null table, which
-- keeps nothing: its view turns each row into `event_lookup`'s min/max states. New events
-- only enter `events` through the sink, and re-attribution rewrites events without changing a
-- key or a workspace, so the index still covers every stored event.
--
-- The new path is created before the old view is dropped, so no write goes unindexed; while
-- both exist a write is indexed twice, which min and max make harmless. Stop ingest processes
-- of an older version before migrating: their writes are no longer indexed afterwards.

CREATE TABLE IF NOT EXISTS event_lookup_input
(
    key_kind {{ lc }},
    key String,
    org_name String,
    workspace_name String,
    first_time DateTime('UTC'),
    last_time DateTime('UTC')
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS event_lookup_input_mv TO event_lookup AS
SELECT
    key_kind,
    key,
    org_name,
    workspace_name,
    minState(first_time) AS first_seen,
    maxState(last_time) AS last_seen
FROM event_lookup_input
GROUP BY key_kind, key, org_name, workspace_name;

DROP TABLE IF EXISTS event_lookup_mv;
