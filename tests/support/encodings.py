"""Databases in other server encodings, filled with non-ASCII names and rows, and read back as stored bytes."""

from __future__ import annotations

import psycopg
from psycopg import sql

# Per encoding: a table name and rows outside ASCII, written through a UTF8 client (the server converts, except
# SQL_ASCII, which stores the client's bytes as they come); SQL_ASCII also gets a lone LATIN1 byte (0xE9), which
# is not UTF-8 at all.
SAMPLES = {
    "SQL_ASCII": ("café_ü", ["naïve", "日本語", None]),
    "LATIN1": ("café_ü", ["ñandú ÿ", "Größe", None]),
    "EUC_JP": ("日本_表", ["東京タワー", "ｶﾀｶﾅ と ひらがな", None]),
}


def fill_encoded(url: str, encoding: str) -> None:
    """Creates SAMPLES[encoding]'s table and a 40-row `plain` table in the (empty or seeded) database at `url`."""
    table, notes = SAMPLES[encoding]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET client_encoding = 'UTF8'")
        conn.execute(sql.SQL("CREATE TABLE public.{} (id int PRIMARY KEY, note text)").format(sql.Identifier(table)))
        conn.execute(sql.SQL("CREATE TABLE public.plain (id int)"))
        conn.execute("INSERT INTO public.plain SELECT generate_series(1, 40)")
        for i, note in enumerate(notes):
            conn.execute(sql.SQL("INSERT INTO public.{} VALUES (%s, %s)").format(sql.Identifier(table)), (i, note))
        if encoding == "SQL_ASCII":
            conn.execute(
                sql.SQL("INSERT INTO public.{} VALUES (99, convert_from('\\x636166e9'::bytea, 'SQL_ASCII'))").format(
                    sql.Identifier(table)
                )
            )


def stored_bytes(url: str) -> tuple[str, list[tuple[str, bytes | None]]]:
    """(the database's encoding, the names of public's tables and every text value of the sample table (public's
    table with a `note` besides `plain`), as the bytes the server stores)."""
    with psycopg.connect(url) as conn:
        # This test's own reading: LATIN1 maps a SQL_ASCII database's bytes one to one; else UTF8.
        ascii_db = conn.info.parameter_status("server_encoding") == "SQL_ASCII"
        conn.execute(f"SET client_encoding = '{'LATIN1' if ascii_db else 'UTF8'}'")
        encoding = conn.execute("SELECT getdatabaseencoding()").fetchone()[0]
        tables = conn.execute(
            "SELECT convert_to(relname, getdatabaseencoding()) FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1"
        ).fetchall()
        [table] = [
            r[0]
            for r in conn.execute(
                "SELECT oid::regclass::text FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                "AND relkind = 'r' AND relname <> 'plain' AND EXISTS (SELECT FROM pg_attribute "
                "WHERE attrelid = pg_class.oid AND attname = 'note')"
            ).fetchall()
        ]
        values = conn.execute(
            sql.SQL("SELECT id::text, convert_to(note, getdatabaseencoding()) FROM {} ORDER BY id").format(
                sql.SQL(table)
            )
        ).fetchall()
    return encoding, [("table", bytes(t[0])) for t in tables] + [(i, bytes(v) if v else None) for i, v in values]
