"""Removing many dynamic partitions at once, for retention runs that delete thousands of backups.

Dagster's public API removes one partition per call (`DagsterInstance.delete_dynamic_partition`, one commit
each); there is no public bulk delete. Several calls run at once, which a PostgreSQL instance storage serves
in parallel and SQLite at least overlaps (connection set-up and commit wait).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

PARALLEL_DELETES = 4


def delete_dynamic_partitions(instance: dg.DagsterInstance, partitions_def_name: str, keys: Sequence[str]) -> None:
    with ThreadPoolExecutor(max_workers=PARALLEL_DELETES) as pool:
        # list(): the first failure surfaces here rather than being dropped with its future.
        list(pool.map(lambda key: instance.delete_dynamic_partition(partitions_def_name, key), keys))
