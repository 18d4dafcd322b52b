"""Prometheus exporter for Azure Databricks job runs and instance pools."""

__version__ = "0.1.0"
