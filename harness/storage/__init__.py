"""The run directory's files: the record schema, the directory itself (lock, per-question parts, identity), the
typed run metadata, question ranges and chunks, the reuse cache and the fingerprints that key it."""
