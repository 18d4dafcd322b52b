"""Collectors turn Databricks API pages into plain data, one module per API area."""
