"""database_dump, offsite_backup and restore_verification of one database: one op.

The dump streams straight into storage, so dumping and storing are one step; verification follows in the
same op (a run may select it alone, to verify a stored backup again). Three assets so the UI shows what was
dumped (rows, versions) apart from what was stored (object, sha256) and what was proven to restore. One op
per database rather than one per asset: each op costs the code location's load time.
"""

import dagster as dg

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.errors import BackupError
from backup_pipeline.core.health import HEALTH_CHECKS, compare_backups, previous_verified_manifest
from backup_pipeline.core.names import BackupId
from backup_pipeline.defs.assets.failures import fail_clearly
from backup_pipeline.defs.assets.verification import verification_spec, verify_partition
from backup_pipeline.defs.heartbeats import heartbeat_pings
from backup_pipeline.defs.metrics import publish_metrics
from backup_pipeline.defs.names import LABEL_TAG, DefinitionNames
from backup_pipeline.defs.resources import BackupStorageResource, PostgresResource
from backup_pipeline.defs.sweeping import sweep_for


def build_backup_asset(
    db: DatabaseSettings, names: DefinitionNames, partitions: dg.DynamicPartitionsDefinition, storage_kind: str = "s3"
):
    dump_key = dg.AssetKey(names.asset_path("database_dump"))
    offsite_key = dg.AssetKey(names.asset_path("offsite_backup"))
    verification_key = dg.AssetKey(names.asset_path("restore_verification"))

    @dg.multi_asset(
        name=f"{names.partitions}_dump_upload_verify",
        specs=[
            dg.AssetSpec(
                dump_key,
                description=(
                    "pg_dump of the database in custom format, owners and privileges included, taken inside an "
                    "exported snapshot; per-table row counts and the database's own owner, privileges, settings "
                    "and encoding come from the same snapshot. One partition per backup."
                ),
                group_name=names.group,
                kinds={"postgres"},
                skippable=True,
            ),
            dg.AssetSpec(
                offsite_key,
                deps=[dump_key],
                description=(
                    "The dump stored in backup storage under a name like app_pre-migration_20260113_150000.dump "
                    "(prefix, type, UTC time), streamed with its sha256 computed on the way, and its JSON manifest "
                    "written last beside it."
                ),
                group_name=names.group,
                kinds={storage_kind},
                skippable=True,
            ),
            verification_spec(names),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                "stored_object_matches_manifest",
                asset=offsite_key,
                description="The stored dump's size equals the size recorded in its manifest.",
            ),
            *health_check_specs(offsite_key),
        ],
        partitions_def=partitions,
        can_subset=True,
        # One step at a time per database (dagster.yaml: pools of run granularity, default limit 1), however
        # the run was started: schedule, request, command line or the UI's Materialize button.
        pool=names.pool,
    )
    def dump_upload_verify(
        context: dg.AssetExecutionContext, postgres: PostgresResource, backup_storage: BackupStorageResource
    ):
        selected = context.selected_asset_keys
        try:
            # A new backup pings its heartbeat (start, success or fail); verifying a stored one again does not.
            with heartbeat_pings(context, db, active=dump_key in selected):
                with fail_clearly():
                    sweep_for(context, postgres, backup_storage, db)
                if selected & {dump_key, offsite_key}:
                    label = context.run.tags.get(LABEL_TAG) or None
                    yield from dump_and_upload(
                        context,
                        postgres,
                        backup_storage,
                        db,
                        context.partition_key,
                        label,
                        selected,
                        context.selected_asset_check_keys,
                    )
                if verification_key in selected:
                    yield verify_partition(context, postgres, backup_storage, db, context.partition_key)
        finally:
            # Failed or not: the metrics say what storage now holds (a failed verification shows as such).
            publish_metrics(postgres, backup_storage, db, context.log.warning)

    return dump_upload_verify


def dump_and_upload(
    context,
    postgres: PostgresResource,
    backup_storage: BackupStorageResource,
    db: DatabaseSettings,
    partition_key: str,
    label: str | None,
    selected,
    selected_checks,
):
    """Dumps the database into storage as backup `partition_key`: the materializations of the selected assets
    among database_dump and offsite_backup, and the selected checks' results, as MaterializeResult and
    AssetCheckResult (a run of a night's batch turns them into events of each database's own assets)."""
    names = DefinitionNames(db)
    dump_key = dg.AssetKey(names.asset_path("database_dump"))
    offsite_key = dg.AssetKey(names.asset_path("offsite_backup"))
    connection = postgres.database(db)
    with fail_clearly():
        backup_id = BackupId.parse(partition_key)
        catalog = backup_storage.catalog(connection, db.storage_prefix)
        result = take_backup(
            connection.target(),
            catalog,
            backup_id,
            connection.tools(),
            db.dump_options(),
            log=context.log.info,
            label=label,
            stall_seconds=db.stall_seconds,
        )
    manifest = result.manifest
    ratio = manifest.database_size_bytes / manifest.size_bytes if manifest.size_bytes else 0.0
    if dump_key in selected:
        yield dg.MaterializeResult(
            asset_key=dump_key,
            metadata={
                "database": manifest.database,
                "backup_type": manifest.type,
                **labelled(manifest),
                "tables": dg.MetadataValue.int(len(manifest.tables)),
                "rows": dg.MetadataValue.int(manifest.total_rows),
                "database_size_bytes": dg.MetadataValue.int(manifest.database_size_bytes),
                "server_version": manifest.server_version,
                "pg_dump_version": manifest.pg_dump_version,
                "dump_format": manifest.format,
                "compression": manifest.compression,
                "duration_s": dg.MetadataValue.float(manifest.duration_s),
            },
        )
    if offsite_key in selected:
        yield dg.MaterializeResult(
            asset_key=offsite_key,
            metadata={
                "name": manifest.name,
                **labelled(manifest),
                "uri": dg.MetadataValue.url(result.uri) if result.uri.startswith("file:") else result.uri,
                "size_bytes": dg.MetadataValue.int(manifest.size_bytes),
                "sha256": manifest.sha256,
                "compression_ratio": dg.MetadataValue.float(round(ratio, 3)),
                "duration_s": dg.MetadataValue.float(manifest.duration_s),
                "tables": dg.MetadataValue.int(len(manifest.tables)),
                "rows": dg.MetadataValue.int(manifest.total_rows),
                "server_version": manifest.server_version,
                "pg_dump_version": manifest.pg_dump_version,
            },
        )
    yield from health_check_results(
        context, selected_checks, catalog, manifest, offsite_key, db.health_max_row_drop_percent
    )
    if dg.AssetCheckKey(offsite_key, "stored_object_matches_manifest") not in selected_checks:
        return
    stored = catalog.storage.head(manifest.key)
    yield dg.AssetCheckResult(
        asset_key=offsite_key,
        check_name="stored_object_matches_manifest",
        passed=stored is not None and stored.size == manifest.size_bytes,
        metadata={
            "stored_bytes": dg.MetadataValue.int(stored.size if stored else 0),
            "manifest_bytes": dg.MetadataValue.int(manifest.size_bytes),
        },
    )


def backup_check_keys(db: DatabaseSettings) -> set[dg.AssetCheckKey]:
    """Every check a backup of the database evaluates (on its offsite_backup asset)."""
    offsite_key = dg.AssetKey(DefinitionNames(db).asset_path("offsite_backup"))
    names = ["stored_object_matches_manifest", *HEALTH_CHECKS]
    return {dg.AssetCheckKey(offsite_key, name) for name in names}


def health_check_specs(asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The backup health checks (core/health.py): warnings, never blocking (a failing one blocks nothing but
    retention of the last good backup before it)."""
    return [
        dg.AssetCheckSpec(
            name,
            asset=asset_key,
            blocking=False,
            description=f"{text} Compared with the previous "
            "verified backup of the same database; a failure is a warning.",
        )
        for name, text in HEALTH_CHECKS.items()
    ]


def health_check_results(context, selected_checks, catalog, manifest, asset_key: dg.AssetKey, row_drop_percent: float):
    selected = {k.name for k in selected_checks if k.asset_key == asset_key} & set(HEALTH_CHECKS)
    if not selected:
        return
    try:
        previous = previous_verified_manifest(catalog, manifest)
    except BackupError as error:  # an unreadable previous manifest: nothing to compare with, say so
        context.log.warning(f"health checks compare with nothing: {error}")
        previous = None
    findings = compare_backups(manifest, previous, row_drop_percent)
    for finding in findings:
        if finding.check not in selected:
            continue
        if not finding.passed:
            context.log.warning(f"health check {finding.check} failed: {finding.description}")
        yield dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=finding.check,
            passed=finding.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=finding.description,
            metadata=finding.metadata,
        )


def labelled(manifest) -> dict:
    """The label and source server, shown in the UI beside the backup; absent when not recorded."""
    shown = {}
    if manifest.label:
        shown["label"] = manifest.label
    if manifest.source_server:
        shown["source_server"] = manifest.source_server
    return shown
