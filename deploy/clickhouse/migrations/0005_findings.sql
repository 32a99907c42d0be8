-- Findings: what the detection rules concluded, one row version per evaluation.
--
-- `finding_id` is a hash of the rule and the finding's key (what the rule groups by), so the same
-- evidence evaluated again, or late evidence joining it, is the same finding: a new version with
-- a later `updated_at` replaces the old one in `findings FINAL`. No partition key: a finding's
-- times may move with late evidence, and versions must stay in one part to collapse.

CREATE TABLE IF NOT EXISTS findings
(
    finding_id String,
    rule_id {{ lc }},
    severity {{ lc }},
    provider {{ lc }},
    org_name {{ lc }},
    workspace_name {{ lc }},
    alias_tag {{ lc }},
    run_id String,
    principal String,
    first_seen DateTime('UTC'),
    last_seen DateTime('UTC'),
    evidence Array(String),
    summary String,
    status {{ lc }},
    status_reason String,
    detected_at DateTime('UTC'),
    updated_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (rule_id, finding_id);
