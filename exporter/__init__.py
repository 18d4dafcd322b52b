"""Prometheus exporter for Azure Databricks job runs and instance pools."""

from pkgutil import extend_path

# Every exporter/ directory on the import path is part of the package, so a collector's folder
# can be added from outside it (exporter.collectors finds them all).
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
