-- The normalized events, the dedup key index, and the dead letters.
--
-- A template (minijinja) rendered per server: `lc` is LowCardinality(String) where the server
-- has it, `ipv6` is IPv6 or FixedString(16) (same RowBinary bytes), `codec(...)`, `ttl(...)` and
-- `caps.skip_indexes` vanish on servers without them. One Rust row type serves every rendering.

CREATE TABLE IF NOT EXISTS events
(
    event_time DateTime('UTC'){{ codec("DoubleDelta, ZSTD(1)") }},
    event_ms UInt16,
    ingest_time DateTime('UTC'){{ codec("DoubleDelta, ZSTD(1)") }},
    dedup_key UInt64,
    event_kind {{ lc }},
    source {{ lc }},
    source_event_id String,
    provider {{ lc }},
    event_name {{ lc }},
    outcome {{ lc }},
    error_code {{ lc }},
    error_message String{{ codec("ZSTD(3)") }},
    issuer {{ lc }},
    audience {{ lc }},
    subject String,
    token_type {{ lc }},
    org_name {{ lc }},
    project_name {{ lc }},
    workspace_name {{ lc }},
    run_phase {{ lc }},
    org_id {{ lc }},
    project_id {{ lc }},
    workspace_id {{ lc }},
    run_id String,
    jti String,
    token_fingerprint String,
    alias_tag {{ lc }},
    region {{ lc }},
    target_account {{ lc }},
    target_principal {{ lc }},
    session_name String,
    session_id String,
    session_expiry Nullable(DateTime('UTC')),
    duration_seconds Nullable(UInt32),
    token_issued_at Nullable(DateTime('UTC')),
    token_expires_at Nullable(DateTime('UTC')),
    source_ip {{ ipv6 }},
    user_agent {{ lc }},
    raw String{{ codec("ZSTD(3)") }}
{%- if caps.skip_indexes %},
    INDEX idx_run_id run_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_principal target_principal TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_fingerprint token_fingerprint TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_jti jti TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_workspace_id workspace_id TYPE set(1000) GRANULARITY 4
{%- endif %}
)
ENGINE = ReplacingMergeTree(ingest_time)
PARTITION BY toYYYYMM(event_time)
ORDER BY (org_name, workspace_name, event_time, dedup_key)
{{ ttl("event_time") }};

-- Which source events are stored, for counting duplicates before insert. A key is written only
-- after its event's INSERT succeeded, so a key never exists without its event.
CREATE TABLE IF NOT EXISTS dedup_keys
(
    dedup_key UInt64,
    first_ingest_time DateTime('UTC')
)
ENGINE = ReplacingMergeTree(first_ingest_time)
ORDER BY dedup_key
{{ ttl("first_ingest_time") }};

CREATE TABLE IF NOT EXISTS dead_letters
(
    received_time DateTime('UTC'),
    dedup_key UInt64,
    source {{ lc }},
    origin String,
    error_kind {{ lc }},
    reason String{{ codec("ZSTD(3)") }},
    raw_size UInt64,
    raw_sha256 String,
    raw String{{ codec("ZSTD(3)") }}
)
ENGINE = ReplacingMergeTree(received_time)
PARTITION BY toYYYYMM(received_time)
ORDER BY (source, dedup_key)
{{ ttl("received_time") }};
