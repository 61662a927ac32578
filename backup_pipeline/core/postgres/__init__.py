"""PostgreSQL plumbing, one module per concern; the one place that talks to PostgreSQL.

- target: `PostgresTarget` (a database's URL, its sessions and their settings, the client tools' password file)
- environment: what client tools run with (no secrets but a temporary password file)
- poolers: recognising and refusing a transaction-mode pooler
- clients: finding pg_dump/pg_restore/psql and choosing one per server or archive
- catalog: server version and identity, database size, row counts
- sessions: exported snapshots, naming our sessions, what they wait for, cancelling them
- locks: advisory locks held in a transaction kept open
- scratch: scratch database names and the locks that claim them
- maintenance: the connection that creates, renames and drops databases
- databases: create, drop, rename, swap databases; which names a restore accepts
- throwaway: a server of its own for the demo, the tests and local verification
"""

from backup_pipeline.core.postgres.target import PostgresTarget

__all__ = ["PostgresTarget"]
