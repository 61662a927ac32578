"""Pruning many backups: their Dagster partitions are removed (several at once, by the public API), exactly."""

import dagster as dg

from backup_pipeline.defs.partitions import PARALLEL_DELETES, delete_dynamic_partitions


def test_many_partitions_are_removed_exactly_and_other_definitions_are_untouched(dagster_home, clean_env):
    clean_env.setenv("DAGSTER_HOME", str(dagster_home))
    keys = [f"daily_2020{m:02d}{d:02d}_000000" for m in range(1, 4) for d in range(1, 21)]
    assert len(keys) > 10 * PARALLEL_DELETES  # every worker deletes several
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("backups", keys)
        instance.add_dynamic_partitions("billing__backups", keys[:10])
        doomed = keys[: len(keys) - 7]

        delete_dynamic_partitions(instance, "backups", doomed)

        assert instance.get_dynamic_partitions("backups") == keys[len(keys) - 7 :]
        assert instance.get_dynamic_partitions("billing__backups") == keys[:10]
        delete_dynamic_partitions(instance, "backups", [])  # nothing to do is fine
        assert len(instance.get_dynamic_partitions("backups")) == 7
