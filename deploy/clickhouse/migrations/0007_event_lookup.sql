-- Where to look for an identifier: the forensic queries' index over `events`.
--
-- `events` is ordered by (org_name, workspace_name, event_time) for the per-workspace reads the
-- rules and dashboards make. An analyst starts from a run id, an access key, a token's jti or
-- fingerprint, a principal or a workspace id instead: this table maps each such key to the
-- workspaces it appears in and the time span it covers, so a lookup reads a few granules of the
-- index and then only that slice of `events` by its primary key, on every server generation
-- (18.16 has no data-skipping indexes by default).
--
-- Fed by a materialized view on `events` inserts. min and max are idempotent, so redelivered or
-- re-attributed events change nothing; read with minMerge/maxMerge grouped by the key. The
-- backfill at the end indexes the events stored before this migration.

CREATE TABLE IF NOT EXISTS event_lookup
(
    key_kind {{ lc }},
    key String,
    org_name String,
    workspace_name String,
    first_seen AggregateFunction(min, DateTime('UTC')),
    last_seen AggregateFunction(max, DateTime('UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (key_kind, key, org_name, workspace_name);

CREATE MATERIALIZED VIEW IF NOT EXISTS event_lookup_mv TO event_lookup AS
SELECT
    tupleElement(k, 1) AS key_kind,
    tupleElement(k, 2) AS key,
    org_name,
    workspace_name,
    minState(event_time) AS first_seen,
    maxState(event_time) AS last_seen
FROM events
ARRAY JOIN [
    ('run', run_id), ('session', session_id), ('jti', jti), ('fingerprint', token_fingerprint),
    ('principal', target_principal), ('workspace', workspace_name), ('workspace_id', workspace_id)
] AS k
WHERE tupleElement(k, 2) != ''
GROUP BY key_kind, key, org_name, workspace_name;

INSERT INTO event_lookup
SELECT
    tupleElement(k, 1) AS key_kind,
    tupleElement(k, 2) AS key,
    org_name,
    workspace_name,
    minState(event_time) AS first_seen,
    maxState(event_time) AS last_seen
FROM events
ARRAY JOIN [
    ('run', run_id), ('session', session_id), ('jti', jti), ('fingerprint', token_fingerprint),
    ('principal', target_principal), ('workspace', workspace_name), ('workspace_id', workspace_id)
] AS k
WHERE tupleElement(k, 2) != ''
GROUP BY key_kind, key, org_name, workspace_name;
