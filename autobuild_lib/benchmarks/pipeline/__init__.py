"""The generation pipeline every benchmark shares: stages, work units (shards), manifest, timing."""
