-- The alias inventory, versioned, and the attribution outcome on events.
--
-- `inventory` holds one snapshot per workspace per import: every configuration (provider, alias
-- tag; `alias_tag = ''` is the default configuration) the workspace had from `valid_from` on. A
-- snapshot with no configuration is one row with `provider = ''`, so "had none" is recorded too.
-- What was configured at time T is the workspace's latest snapshot with `valid_from <= T`.

CREATE TABLE IF NOT EXISTS inventory
(
    valid_from DateTime('UTC'),
    snapshot_id String,
    org_name {{ lc }},
    workspace_name {{ lc }},
    workspace_id {{ lc }},
    provider {{ lc }},
    alias_tag {{ lc }},
    plan_principal String,
    apply_principal String,
    audience String,
    allowed_accounts Array(String),
    settings String,
    derived_from String,
    origin String
)
ENGINE = ReplacingMergeTree
ORDER BY (org_name, workspace_name, valid_from, provider, alias_tag);

-- How `alias_tag` was decided (`issuance`, `matched`, `principal`, `audience`) or why it is empty
-- (`ambiguous`, `no_match`, `unknown_workspace`, `no_workspace`, `no_inventory`).
ALTER TABLE events
    ADD COLUMN alias_match String AFTER alias_tag;
