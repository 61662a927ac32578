"""S3's errors in the user's words: what failed, where, and which variables to check.

botocore raises ClientError with a code, connection errors, credential errors, and s3transfer wraps them
all; every S3 call of s3.py goes through `s3_errors`, which turns them into one BackupError naming the
variables the user actually set (DO_SPACES_* or BACKUP_S3_*/AWS_*).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from backup_pipeline.core.errors import BackupError

if TYPE_CHECKING:
    from backup_pipeline.core.storage.s3 import S3StorageSettings

_REFUSED_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "Forbidden", "InvalidToken"}
)


@contextlib.contextmanager
def s3_errors(settings: S3StorageSettings, action: str, passthrough: tuple = ()):
    """Runs an S3 call, raising any botocore error as a BackupError for `action` ("read x from")."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except passthrough:
        raise
    except (ClientError, BotoCoreError) as error:
        raise translate(settings, error, action) from None
    except Exception as error:
        # s3transfer wraps part failures; unwrap to the botocore error when there is one.
        cause = error.__cause__ or error.__context__
        if isinstance(cause, (ClientError, BotoCoreError)):
            raise translate(settings, cause, action) from None
        raise


def error_code(error) -> str:
    """A ClientError's code (`NoSuchKey`, `404`), empty for anything else."""
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


def translate(settings: S3StorageSettings, error, action: str) -> BackupError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    where = settings.describe()
    if isinstance(error, ClientError):
        code = error_code(error)
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket",) or (code in ("404", "NotFound") and action == "open"):
            return BackupError(
                f"the bucket '{settings.bucket}' does not exist at {settings.endpoint_url or 'AWS S3'}: create it, "
                f"or set {_bucket_variables(settings)} to an existing one"
            )
        if code == "NoSuchKey":
            return BackupError(f"cannot {action} {where}: the object does not exist (run `backup-db list`)")
        # A HEAD request gets a bare 403, a GET or a listing the reason (InvalidAccessKeyId, ...): every verb
        # says the same thing, so the reason is left out.
        if code in _REFUSED_CODES:
            return BackupError(
                f"cannot {action} {where}: the credentials were refused. Check {_credential_variables(settings)}"
            )
        return BackupError(f"cannot {action} {where}: S3 answered {code or status}")
    if isinstance(error, NoCredentialsError):
        return BackupError(
            f"cannot {action} {where}: no S3 credentials found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or DO_SPACES_KEY and DO_SPACES_SECRET)"
        )
    if isinstance(error, EndpointConnectionError) or "connect" in type(error).__name__.lower():
        return BackupError(
            f"cannot {action} {where}: the endpoint is unreachable. Check {settings.endpoint_env} and the network"
        )
    return BackupError(f"cannot {action} {where}: {type(error).__name__}: {str(error).splitlines()[0]}")


def _bucket_variables(settings: S3StorageSettings) -> str:
    if settings.bucket_env == "DO_SPACES_BUCKET":
        return "DO_SPACES_BUCKET (and DO_SPACES_REGION)"
    return f"{settings.bucket_env} (and BACKUP_S3_ENDPOINT_URL)"


def _credential_variables(settings: S3StorageSettings) -> str:
    used = {settings.access_key_id_env, settings.secret_access_key_env} - {None}
    if used and all(name.startswith("DO_SPACES_") for name in used):
        return "DO_SPACES_KEY and DO_SPACES_SECRET"
    if used and not any(name.startswith("DO_SPACES_") for name in used):
        return "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    return "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or DO_SPACES_KEY and DO_SPACES_SECRET)"
