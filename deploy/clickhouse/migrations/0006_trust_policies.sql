-- Trust policies: what each federation trust in HCP Terraform's tokens accepts, as imported by
-- `credtrail inventory trust` (AWS role trust policies, GCP workload identity providers, Azure
-- federated credentials, Vault JWT roles), one row per trusting statement, versioned by
-- `valid_from` like `inventory`. What a trust accepted at time T is its latest import with
-- `valid_from <= T`. Only the conditions are kept, never a secret.
--
-- `sub_patterns` are globs (`*`, `?`); an exact-match condition's own `*` and `?` are escaped
-- with a backslash. `condition` is a GCP attribute condition (CEL), empty elsewhere.

CREATE TABLE IF NOT EXISTS trust_policies
(
    valid_from DateTime('UTC'),
    snapshot_id String,
    provider {{ lc }},
    resource String,
    statement UInt16,
    issuer {{ lc }},
    sub_patterns Array(String),
    audiences Array(String),
    condition String,
    document_sha256 String,
    origin String
)
ENGINE = ReplacingMergeTree
ORDER BY (provider, resource, valid_from, statement);
