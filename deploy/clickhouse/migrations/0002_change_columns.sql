-- Columns for trust-root and configuration changes (CloudTrail IAM calls, HCP audit trails) and
-- for the trust object that accepted a token (an Entra federated credential, a Vault auth mount).
--
-- One ALTER, so that the columns arrive together: 18.16 has no `ADD COLUMN IF NOT EXISTS`,
-- and a migration is recorded only after all of its statements succeeded.

ALTER TABLE events
    ADD COLUMN actor String AFTER user_agent,
    ADD COLUMN variable_key String AFTER actor,
    ADD COLUMN credential_id String AFTER variable_key;
