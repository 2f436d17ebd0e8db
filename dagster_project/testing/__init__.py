"""Support code for tests and benchmarks (never imported by the pipeline itself)."""
