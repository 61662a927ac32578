"""boto3's checksum headers: only those an operation requires on S3-compatible stores that are not AWS."""

import pytest

from backup_pipeline.core.config_loading import load_settings
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.storage.s3 import S3StorageSettings, checksum_mode, s3_client
from backup_pipeline.defs.resources import storage_resource


@pytest.mark.parametrize(
    ("endpoint", "override", "mode"),
    [
        (None, None, "when_supported"),
        ("https://s3.eu-west-1.amazonaws.com", None, "when_supported"),
        ("https://fra1.digitaloceanspaces.com", None, "when_required"),
        ("https://abc.r2.cloudflarestorage.com", None, "when_required"),
        ("http://127.0.0.1:9000", None, "when_required"),
        ("https://fra1.digitaloceanspaces.com", "when_supported", "when_supported"),
        (None, "when_required", "when_required"),
    ],
)
def test_checksum_mode_follows_the_endpoint_unless_told(endpoint, override, mode):
    settings = S3StorageSettings(bucket="b-1", endpoint_url=endpoint, checksums=override)
    assert checksum_mode(settings) == mode
    config = s3_client(settings).meta.config
    assert config.request_checksum_calculation == mode and config.response_checksum_validation == mode


def test_the_dagster_resource_builds_its_client_in_the_same_place():
    settings = load_settings(
        {"BACKUP_S3_BUCKET": "team-backups", "DO_SPACES_REGION": "fra1", "BACKUP_S3_MAX_ATTEMPTS": "3"}
    ).storage
    client = storage_resource(settings).storage().client
    assert client.meta.endpoint_url == "https://fra1.digitaloceanspaces.com"
    assert client.meta.config.request_checksum_calculation == "when_required"
    assert client.meta.config.response_checksum_validation == "when_required"
    assert client.meta.config.retries["mode"] == "standard"


def test_a_bad_checksum_mode_names_the_variable_and_the_choices():
    with pytest.raises(ConfigurationError, match="BACKUP_S3_CHECKSUMS must be when_required .* or when_supported"):
        load_settings({"BACKUP_S3_BUCKET": "team-backups", "BACKUP_S3_CHECKSUMS": "never"})
