"""Pruning thousands of backups: their Dagster partitions are removed in batches, exactly."""

import dagster as dg

from backup_pipeline.defs.partitions import BATCH, delete_dynamic_partitions


def test_many_partitions_are_removed_exactly_and_other_definitions_are_untouched(dagster_home, clean_env):
    clean_env.setenv("DAGSTER_HOME", str(dagster_home))
    keys = [
        f"daily_2020{m:02d}{d:02d}_{h:02d}0000" for m in range(1, 13) for d in range(1, 29) for h in range(0, 24, 6)
    ]
    assert len(keys) > 2 * BATCH  # several batches
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("backups", keys)
        instance.add_dynamic_partitions("billing__backups", keys[:10])
        doomed = keys[: len(keys) - 7]

        delete_dynamic_partitions(instance, "backups", doomed)

        assert instance.get_dynamic_partitions("backups") == keys[len(keys) - 7 :]
        assert instance.get_dynamic_partitions("billing__backups") == keys[:10]
        delete_dynamic_partitions(instance, "backups", [])  # nothing to do is fine
        assert len(instance.get_dynamic_partitions("backups")) == 7
