-- What each issued AWS session did, aggregated per session instead of stored call by call.
--
-- The sink inserts one row per API call into `session_calls`, a Null table that keeps nothing;
-- the materialized view folds each insert into `session_activity`, keyed by the session's access
-- key id. Every aggregate is idempotent under redelivery (min, max, exact distinct count of call
-- keys, distinct sets), so a call delivered twice changes nothing. Read with the -Merge
-- functions, grouped by session_id.

CREATE TABLE IF NOT EXISTS session_calls
(
    session_id String,
    event_time DateTime('UTC'),
    call_key UInt64,
    event_source String,
    failed UInt8,
    source_ip String,
    region String,
    account String,
    role_arn String,
    session_name String
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS session_activity
(
    session_id String,
    first_seen AggregateFunction(min, DateTime('UTC')),
    last_seen AggregateFunction(max, DateTime('UTC')),
    calls AggregateFunction(uniqExact, UInt64),
    failed_calls AggregateFunction(uniqExactIf, UInt64, UInt8),
    source_ips AggregateFunction(groupUniqArray, String),
    regions AggregateFunction(groupUniqArray, String),
    accounts AggregateFunction(groupUniqArray, String),
    services AggregateFunction(groupUniqArray, String),
    role_arn AggregateFunction(any, String),
    session_name AggregateFunction(any, String)
)
ENGINE = AggregatingMergeTree
ORDER BY session_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS session_activity_mv TO session_activity AS
SELECT
    session_id,
    minState(event_time) AS first_seen,
    maxState(event_time) AS last_seen,
    uniqExactState(call_key) AS calls,
    uniqExactIfState(call_key, failed = 1) AS failed_calls,
    groupUniqArrayState(source_ip) AS source_ips,
    groupUniqArrayState(region) AS regions,
    groupUniqArrayState(account) AS accounts,
    groupUniqArrayState(event_source) AS services,
    anyState(role_arn) AS role_arn,
    anyState(session_name) AS session_name
FROM session_calls
GROUP BY session_id;
