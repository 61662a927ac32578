"""Storage backends behind one factory: settings choose the backend, and survive the Dagster resource's config."""

import pytest

from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.storage import LocalStorageSettings, S3StorageSettings, open_storage, storage_settings_from
from backup_pipeline.core.storage.factory import BACKENDS
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.storage.s3 import S3Storage
from backup_pipeline.defs.resources import storage_resource


def test_the_environment_chooses_the_backend(tmp_path):
    local = load_settings({"BACKUP_LOCAL_DIR": str(tmp_path)}).storage
    assert isinstance(local, LocalStorageSettings) and isinstance(open_storage(local), LocalStorage)
    s3 = load_settings({"BACKUP_S3_BUCKET": "team-backups", "BACKUP_LOCAL_DIR": str(tmp_path)}).storage
    assert isinstance(s3, S3StorageSettings) and isinstance(open_storage(s3), S3Storage)


def test_s3_variables_are_checked_while_no_bucket_is_set():
    with pytest.raises(ConfigurationError, match="BACKUP_S3_MAX_ATTEMPTS must be a whole number from 1 to 20"):
        load_settings({"BACKUP_S3_MAX_ATTEMPTS": "0"})


@pytest.mark.parametrize(
    "settings",
    [
        LocalStorageSettings(local_dir="/srv/backups", encryption_key_env="BACKUP_ENCRYPTION_KEY"),
        S3StorageSettings(
            bucket="team-backups",
            endpoint_url="https://fra1.digitaloceanspaces.com",
            region="fra1",
            access_key_id_env="DO_SPACES_KEY",
            secret_access_key_env="DO_SPACES_SECRET",
            max_attempts=3,
            bucket_env="DO_SPACES_BUCKET",
        ),
    ],
)
def test_the_dagster_resource_holds_the_settings_as_one_value(settings):
    resource = storage_resource(settings)
    assert resource.storage_settings == settings
    assert resource.storage().describe() == settings.describe()


def test_an_unknown_backend_names_the_known_ones():
    with pytest.raises(ConfigurationError, match="unknown storage backend 'gcs': use one of local, s3"):
        storage_settings_from({"backend": "gcs", "bucket": "b"})


def test_every_registered_backend_implements_the_whole_interface_under_its_own_name():
    for backend in BACKENDS.values():
        assert not backend.__abstractmethods__, f"{backend.__name__} lacks {sorted(backend.__abstractmethods__)}"
    names = [settings_type.model_fields["backend"].default for settings_type in BACKENDS]
    assert len(set(names)) == len(names) and all(names)


def test_the_local_backend_stores_lists_and_deletes_through_the_factory(tmp_path):
    storage = open_storage(LocalStorageSettings(local_dir=str(tmp_path)))
    storage.put_bytes("db-backups/a.dump.json", b"{}")
    assert storage.read_bytes("db-backups/a.dump.json") == b"{}"
    assert [(o.key, o.size) for o in storage.list("db-backups/")] == [("db-backups/a.dump.json", 2)]
    assert storage.delete_many(["db-backups/a.dump.json"]) == 1 and storage.head("db-backups/a.dump.json") is None
