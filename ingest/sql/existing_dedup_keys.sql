-- Which of these source events are already stored (the sink skips them as duplicates).
SELECT dedup_key FROM dedup_keys WHERE dedup_key IN ?
