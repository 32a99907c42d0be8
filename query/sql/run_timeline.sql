-- The timeline of one run: every issuance and exchange, oldest first, issuance before the
-- exchanges of the same second. FINAL collapses redelivered source events.
SELECT
    event_time,
    event_ms,
    run_phase,
    alias_tag,
    provider,
    event_kind,
    outcome,
    error_code,
    org_name,
    workspace_name,
    audience,
    target_principal,
    session_id,
    IPv6NumToString(source_ip) AS source_ip,
    user_agent,
    token_fingerprint,
    jti,
    source,
    source_event_id
FROM events FINAL
WHERE run_id = ?
ORDER BY event_time, event_ms, event_kind DESC, source_event_id
LIMIT ?
