-- Which of a flush's events are already stored (the sink skips them as duplicates). The flush's
-- keys arrive beside the query as the external table `flush_keys (dedup_key UInt64)`.
SELECT dedup_key FROM dedup_keys WHERE dedup_key IN flush_keys
