"""Removing many dynamic partitions at once, for retention runs that delete thousands of backups.

`DagsterInstance.delete_dynamic_partition` commits once per key: about 20 ms on the SQLite instance, so
10,000 pruned backups would spend minutes there. Dagster's SQL event log storages (SQLite, PostgreSQL,
MySQL) keep dynamic partitions in one table; its rows are deleted here a batch at a time. Any other
storage, or a Dagster whose internals moved, gets the public per-key call, which is slower but the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

BATCH = 500


def delete_dynamic_partitions(instance: dg.DagsterInstance, partitions_def_name: str, keys: Sequence[str]) -> None:
    keys = list(keys)
    if not keys:
        return
    if _delete_in_batches(instance, partitions_def_name, keys):
        return
    for key in keys:
        instance.delete_dynamic_partition(partitions_def_name, key)


def _delete_in_batches(instance: dg.DagsterInstance, partitions_def_name: str, keys: list[str]) -> bool:
    try:
        from dagster._core.storage.event_log.schema import DynamicPartitionsTable
        from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
    except ImportError:
        return False
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        return False
    table = DynamicPartitionsTable
    with storage.index_connection() as conn:
        for start in range(0, len(keys), BATCH):
            conn.execute(
                table.delete().where(
                    (table.c.partitions_def_name == partitions_def_name)
                    & table.c.partition.in_(keys[start : start + BATCH])
                )
            )
    return True
