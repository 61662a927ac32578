"""Where backups are kept: an S3-compatible bucket, or a local folder when no bucket is set; client-side
encryption. Secrets (keys) are held by the name of their variable, never their value."""

from __future__ import annotations

from backup_pipeline.core import config_fields as f
from backup_pipeline.core.settings.declaration import STORAGE, Setting

SETTINGS = (
    Setting(
        name="bucket",
        env="BACKUP_S3_BUCKET",
        section=STORAGE,
        help="S3-compatible bucket (`DO_SPACES_*`: the original workflows' names)",
        type=f.Bucket,
        shown_default="none: the local folder",
        aliases=("DO_SPACES_BUCKET",),
    ),
    Setting(
        name="endpoint_url",
        env="BACKUP_S3_ENDPOINT_URL",
        section=STORAGE,
        help="S3 endpoint (`https://host[:port]`)",
        type=f.EndpointUrl,
        shown_default="AWS S3; with `DO_SPACES_REGION`, `https://<region>.digitaloceanspaces.com`",
    ),
    Setting(
        name="region",
        env="BACKUP_S3_REGION",
        section=STORAGE,
        help="S3 region, short form (`fra1`, `us-east-1`)",
        type=f.Region,
        shown_default="boto3's",
        aliases=("DO_SPACES_REGION",),
    ),
    Setting(
        name="access_key_id_env",
        env="AWS_ACCESS_KEY_ID",
        section=STORAGE,
        help="S3 access key id",
        shown_default="boto3's chain",
        aliases=("DO_SPACES_KEY",),
        holds_name=True,
    ),
    Setting(
        name="secret_access_key_env",
        env="AWS_SECRET_ACCESS_KEY",
        section=STORAGE,
        help="S3 secret key",
        shown_default="boto3's chain",
        aliases=("DO_SPACES_SECRET",),
        holds_name=True,
    ),
    Setting(
        name="local_dir",
        env="BACKUP_LOCAL_DIR",
        section=STORAGE,
        help="folder used when no bucket is set",
        type=str,
        default="./backups",
        shown_default="`backup-db`: `backups/` of the project folder, else `$XDG_DATA_HOME/backup_pipeline/backups` "
        "(see [Where backups and runs live](#where-backups-and-runs-live)); the code location: `./backups` of the "
        "folder it runs in",
    ),
    Setting(
        name="max_attempts",
        env="BACKUP_S3_MAX_ATTEMPTS",
        section=STORAGE,
        help=("attempts per S3 request (5xx, throttling, dropped or stalled connections are retried with backoff)"),
        type=int,
        default=5,
        bounds=(1, 20),
    ),
    Setting(
        name="checksums",
        env="BACKUP_S3_CHECKSUMS",
        section=STORAGE,
        help=(
            "boto3's request checksums and response validation: `when_required` (only the checksums an operation "
            "needs) or `when_supported` (boto3's default). Recent boto3 sends CRC checksum headers on every "
            "upload, which several S3-compatible stores (DigitalOcean Spaces, R2, MinIO and others) reject; "
            "integrity never depends on them: each dump's sha256 is computed on the way up, kept in its manifest "
            "and checked on every download"
        ),
        type=f.S3Checksums,
        shown_default=(
            "`when_required` when `BACKUP_S3_ENDPOINT_URL` (or `DO_SPACES_REGION`) names an endpoint that is not "
            "AWS, else `when_supported`"
        ),
    ),
    Setting(
        name="encryption_key_env",
        env="BACKUP_ENCRYPTION_KEY",
        section=STORAGE,
        help=(
            "encrypt dumps client-side with this key (32 random bytes as base64 or hex: `openssl rand -base64 "
            "32`); see [Client-side encryption](#client-side-encryption)"
        ),
        shown_default="off",
        holds_name=True,
    ),
    Setting(
        name="encryption_key_file",
        env="BACKUP_ENCRYPTION_KEY_FILE",
        section=STORAGE,
        help="or: a file holding the key (set one of the two)",
        type=f.KeyFile,
        shown_default="off",
    ),
)
