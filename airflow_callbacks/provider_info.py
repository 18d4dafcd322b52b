"""What `airflow providers list` shows for this package (the ``apache_airflow_provider`` entry
point of its distribution, the way Airflow's own providers register)."""

from __future__ import annotations

from typing import Any

DISTRIBUTION = "airflow-provider-databricks-slack-callbacks"


def get_provider_info() -> dict[str, Any]:
    from airflow_callbacks import __version__

    return {
        "package-name": DISTRIBUTION,
        "name": "Databricks Slack callbacks",
        "description": "Slack alerts for failed, retried and recovered tasks and DAG runs, with "
        "the Databricks run page, the run's state message and its failed tasks.",
        "notifications": ["airflow_callbacks.DatabricksSlackNotifier"],
        "versions": [__version__],
    }
