"""Interoperability: RobustBench export and import, the autoattack alias, external models."""
