"""A simulated Azure Databricks workspace over HTTP on loopback, for the tests, the benchmarks
and ``--simulate``; it imports nothing of the exporter it is there to test.

- ``world``: jobs, runs and pools as pure functions of (seed, job, run number, clock);
  ``pipelines``: the Lakeflow pipelines and their updates.
- ``api``: the Jobs, Instance Pools and Pipelines APIs' answers, faults, ``/sim/`` controls.
- ``truth``: what the exporter must report (``SimWorkspace.truth``, ``pool_truth``).
"""

from databricks_simulator.api import ApiFailure, FaultRule, SimServer, SimStats
from databricks_simulator.pipelines import SimPipelines
from databricks_simulator.ratelimit import TokenBucket
from databricks_simulator.wire import OUTCOME_WIRE
from databricks_simulator.world import SimClock, SimConfig, SimRun, SimWorkspace

__all__ = [
    "OUTCOME_WIRE",
    "ApiFailure",
    "FaultRule",
    "SimClock",
    "SimConfig",
    "SimPipelines",
    "SimRun",
    "SimServer",
    "SimStats",
    "SimWorkspace",
    "TokenBucket",
]
