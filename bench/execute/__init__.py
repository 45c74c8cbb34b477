"""Executors: one schedule of cells run in order, on local processes, or on Ray; isolation."""
