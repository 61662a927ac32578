"""What changed in a database's schema since a backup: what rolling back to that backup would undo.

Both sides are read as pg_dump prints them, with one client: the backup's archive through `pg_restore
--schema-only --create --file=-` (no server involved, no database created) and the live database through
`pg_dump --schema-only --create`. So every kind of object pg_dump dumps is compared (tables, columns, types and
enum values, sequences, extensions, schemas, owners, privileges, policies, triggers, functions, defaults,
comments, the database's own settings...), not a list we chose; a kind we do not name is still compared, under
"other". Each side is split into pg_dump's own entries (its `-- Name: ...; Type: ...` headers) and compared
entry by entry; tables are further split into columns and constraints, so a change names the column.

By concern: `entry` (a schema entry and the kinds differences are reported under), `dump_encoding` (pg_dump's
output read in the encoding it declares), `entries` (that output split into entries), `tables` (a table split
into its own line, its columns and its constraints), `differences` (the entries compared, and the answer),
`both_sides` (both sides read with one client, then compared).
"""

from backup_pipeline.core.schema_diff.both_sides import diff_backup_schema
from backup_pipeline.core.schema_diff.differences import NOT_COMPARED, SchemaDiff, line_changes
from backup_pipeline.core.schema_diff.entry import KINDS

__all__ = ["KINDS", "NOT_COMPARED", "SchemaDiff", "diff_backup_schema", "line_changes"]
