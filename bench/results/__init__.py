"""Results: the table schemas, the store of per-cell parquet files, provenance."""
