"""A restore gives back the database as it was: owners, GRANTs and REVOKEs, database settings, encoding and
locale; it refuses roles the server lacks unless told how, and never drops replication state silently.

On the machine's server and on PostgreSQL 18; the slot tests on a throwaway server with wal_level=logical.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time

import psycopg
import pytest
from psycopg import sql

from backup_pipeline.core.backup import take_backup
from backup_pipeline.core.catalog import BackupCatalog
from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.names import BackupId, BackupName
from backup_pipeline.core.postgres import PostgresTarget
from backup_pipeline.core.postgres.clients import ClientTools
from backup_pipeline.core.postgres.environment import client_tools_environment
from backup_pipeline.core.postgres.throwaway import ThrowawayServer
from backup_pipeline.core.privileges import PrivilegeChoices
from backup_pipeline.core.prune import apply_prune
from backup_pipeline.core.restore import restore_to_database
from backup_pipeline.core.storage.local import LocalStorage
from backup_pipeline.core.verify import verify_backup
from tests.support.postgres_server import installed_server_bin
from tests.support.scratch import claimed_in_this_process

quiet = lambda _: None  # noqa: E731


def url_for(admin_url: str, dbname: str, user: str | None = None) -> str:
    url = admin_url.rsplit("/", 1)[0] + "/" + dbname
    return url.replace("postgres@", f"{user}@", 1) if user else url


class Shop:
    """A database as an application has it: an owner role, an app role with GRANTs, REVOKEs from PUBLIC,
    a SECURITY DEFINER function, default privileges, database and role settings, LATIN1 with a C locale,
    a publication. Its roles and every database made from it are dropped afterwards."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        tag = secrets.token_hex(3)
        self.owner, self.app, self.other = f"bp_own_{tag}", f"bp_app_{tag}", f"bp_oth_{tag}"
        self.name = f"shop_{tag}"
        self.databases = [self.name]
        self.roles = [self.owner, self.app, self.other]
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(self.owner)))
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(self.app)))
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(self.other)))
            conn.execute(
                sql.SQL(
                    "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'"
                ).format(sql.Identifier(self.name), sql.Identifier(self.owner))
            )
            db, app = sql.Identifier(self.name), sql.Identifier(self.app)
            conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db))
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, app))
            conn.execute(sql.SQL("ALTER DATABASE {} SET search_path = shop, public").format(db))
            conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET statement_timeout = '5s'").format(app, db))
        with psycopg.connect(url_for(admin_url, self.name), autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    """
                    SET ROLE {owner};
                    CREATE SCHEMA shop;
                    CREATE TABLE shop.orders (id serial PRIMARY KEY, note text);
                    INSERT INTO shop.orders (note) SELECT 'caf\u00e9 ' || g FROM generate_series(1, 20) g;
                    CREATE FUNCTION shop.refund_all() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 42';
                    REVOKE EXECUTE ON FUNCTION shop.refund_all() FROM PUBLIC;
                    GRANT EXECUTE ON FUNCTION shop.refund_all() TO {app};
                    GRANT USAGE ON SCHEMA shop TO {app};
                    GRANT SELECT, INSERT, UPDATE ON shop.orders TO {app};
                    GRANT USAGE ON SEQUENCE shop.orders_id_seq TO {app};
                    ALTER DEFAULT PRIVILEGES IN SCHEMA shop GRANT SELECT ON TABLES TO {app};
                    RESET ROLE;
                    CREATE PUBLICATION shop_pub FOR TABLE shop.orders;
                    """
                ).format(owner=sql.Identifier(self.owner), app=app)
            )

    def admin(self):
        return psycopg.connect(self.admin_url, autocommit=True)

    def url(self, dbname: str | None = None, user: str | None = None) -> str:
        return url_for(self.admin_url, dbname or self.name, user)

    def drop(self) -> None:
        with self.admin() as conn:
            for name in self.databases:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            left = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{self.name[:30]}_replaced_%",)
                )
            ]
            for name in left:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in self.roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))

    def picture(self, dbname: str) -> dict:
        """What must come back: the schema as pg_dump prints it (owners and ACLs included), the \\l and \\drds
        entries of the database."""
        with self.admin() as conn:
            entry = conn.execute(
                "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype, datacl::text "
                "FROM pg_database WHERE datname = %s",
                (dbname,),
            ).fetchone()
            settings = conn.execute(
                "SELECT COALESCE(r.rolname, ''), s.setconfig::text FROM pg_db_role_setting s "
                "LEFT JOIN pg_roles r ON r.oid = s.setrole "
                "WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = %s) ORDER BY 1",
                (dbname,),
            ).fetchall()
        return {"schema": schema_only(self.url(dbname)), "database": entry, "settings": settings}

    def check_app_reads_and_writes(self, dbname: str) -> None:
        with psycopg.connect(self.url(dbname, self.app), autocommit=True) as conn:
            assert conn.execute("SHOW search_path").fetchone()[0] == "shop, public"
            assert conn.execute("SHOW statement_timeout").fetchone()[0] == "5s"
            conn.execute("INSERT INTO orders (note) VALUES ('after restore')")
            conn.execute("UPDATE orders SET note = 'changed' WHERE id = 1")
            assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 21
            assert conn.execute("SELECT shop.refund_all()").fetchone()[0] == 42
        # The REVOKE CONNECT ... FROM PUBLIC came back: another role cannot even connect.
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            psycopg.connect(self.url(dbname, self.other)).close()


def schema_only(url: str) -> str:
    with psycopg.connect(url) as conn:
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
    client = ClientTools.locate().for_server(major, str(major), False)
    out = subprocess.run(
        [client.path("pg_dump"), "--schema-only", f"--dbname={url}"],
        capture_output=True,
        text=True,
        check=True,
        env=client_tools_environment(),
    ).stdout
    lines = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("--") and not ln.startswith("\\")]
    return "\n".join(lines)


@pytest.fixture(params=["machine", "pg18"])
def shop(request, pg_admin_url):
    admin = pg_admin_url if request.param == "machine" else request.getfixturevalue("pg18_admin_url")
    made = Shop(admin)
    yield made
    made.drop()


def backup_of(shop: Shop, tmp_path, backup_type: str = "manual") -> tuple[BackupCatalog, BackupName]:
    catalog = BackupCatalog(LocalStorage(tmp_path / "backups"), "db-backups", "shop")
    backup_id = BackupId.new(backup_type)
    take_backup(PostgresTarget.from_url(shop.url()), catalog, backup_id, log=quiet)
    return catalog, BackupName("shop", backup_id)


def test_restore_and_replace_give_back_owners_privileges_settings_and_encoding(shop, tmp_path):
    original = shop.picture(shop.name)
    assert original["database"][1] == "LATIN1" and original["database"][4] is not None
    catalog, name = backup_of(shop, tmp_path)
    manifest = catalog.manifest(name)
    assert {"owner", "database owner"} <= set(manifest.roles[shop.owner])
    assert "grantee" in manifest.roles[shop.app]
    saved = json.loads(catalog.storage.read_bytes(manifest.roles_key))
    assert {r["name"] for r in saved["roles"]} >= {shop.owner, shop.app}
    server = PostgresTarget.from_url(shop.admin_url)

    copy = f"{shop.name}_copy"
    shop.databases.append(copy)
    outcome = restore_to_database(catalog, name, server, copy, log=quiet)
    assert outcome.privileges.not_applied == []
    restored = shop.picture(copy)
    assert restored["schema"] == original["schema"]
    assert restored["database"] == original["database"]
    assert restored["settings"] == original["settings"]
    shop.check_app_reads_and_writes(copy)

    # What the comparison tells apart: a restore told to leave owners and privileges out.
    bare = f"{shop.name}_bare"
    shop.databases.append(bare)
    choices = PrivilegeChoices.parse(no_owner=True, no_acl=True)
    outcome = restore_to_database(catalog, name, server, bare, log=quiet, privileges=choices)
    assert any("left out as asked (--no-owner --no-acl)" in note for note in outcome.privileges.notes)
    stripped = shop.picture(bare)
    assert stripped["schema"] != original["schema"] and stripped["database"][0] == "postgres"
    assert stripped["database"][1:4] == original["database"][1:4]  # encoding and locale are kept regardless

    # The rollback: over the original, which has a publication, so the restore must be told what to do with it.
    with pytest.raises(ConfigurationError, match="publication shop_pub.*Nothing was changed"):
        restore_to_database(catalog, name, server, shop.name, replace=True, log=quiet)
    outcome = restore_to_database(
        catalog, name, server, shop.name, replace=True, log=quiet, replication="recreate-slots"
    )
    assert outcome.privileges.not_applied == []
    replaced = shop.picture(shop.name)
    assert replaced == original
    shop.check_app_reads_and_writes(shop.name)
    with shop.admin() as conn:
        assert not conn.execute(
            "SELECT 1 FROM pg_database WHERE datname LIKE 'bp_replaced_%%' AND datname IN "
            "(SELECT datname FROM pg_database WHERE pg_get_userbyid(datdba) = %s)",
            (shop.owner,),
        ).fetchall()


def test_missing_roles_are_refused_before_anything_is_created_and_a_role_map_applies(
    pg_admin_url, pg18_admin_url, tmp_path
):
    shop = Shop(pg_admin_url)
    other_server = PostgresTarget.from_url(pg18_admin_url)
    tag = secrets.token_hex(3)
    new_owner, new_app = f"bp_nown_{tag}", f"bp_napp_{tag}"
    target = f"shop_moved_{tag}"
    try:
        if pg18_admin_url == pg_admin_url:
            pytest.skip("needs a second cluster: the machine's server is the PostgreSQL 18")
        catalog, name = backup_of(shop, tmp_path)
        with claimed_in_this_process() as scratch, pytest.raises(ConfigurationError) as refused:
            restore_to_database(catalog, name, other_server, target, log=quiet)
        message = str(refused.value)
        assert shop.owner in message and shop.app in message and "Nothing was created" in message
        assert "--role-map" in message and "--no-owner --no-acl" in message and "--create-roles" in message
        with psycopg.connect(pg18_admin_url, autocommit=True) as conn:
            assert not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = ANY(%s)", ([target, *scratch],)
            ).fetchall()
            assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (shop.owner,)).fetchone()[0] == 0
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(new_owner)))
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(new_app)))

        choices = PrivilegeChoices.parse(role_map=[f"{shop.owner}={new_owner}", f"{shop.app}={new_app}"])
        outcome = restore_to_database(catalog, name, other_server, target, log=quiet, privileges=choices)
        assert outcome.privileges.not_applied == []
        with psycopg.connect(url_for(pg18_admin_url, target), autocommit=True) as conn:
            owners = conn.execute(
                "SELECT pg_get_userbyid(relowner), relacl::text FROM pg_class WHERE oid = 'shop.orders'::regclass"
            ).fetchone()
            assert owners[0] == new_owner and new_app in owners[1] and shop.app not in owners[1]
            assert (
                conn.execute(
                    "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (target,)
                ).fetchone()[0]
                == new_owner
            )
        with psycopg.connect(url_for(pg18_admin_url, target, new_app), autocommit=True) as conn:
            assert conn.execute("SHOW statement_timeout").fetchone()[0] == "5s"  # ALTER ROLE ... IN DATABASE, mapped
            conn.execute("INSERT INTO orders (note) VALUES ('mapped')")
            assert conn.execute("SELECT shop.refund_all()").fetchone()[0] == 42
    finally:
        with psycopg.connect(pg18_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))
            for role in (new_owner, new_app):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        shop.drop()


def test_create_roles_recreates_the_saved_roles_in_a_new_cluster(pg_admin_url, pg18_admin_url, tmp_path):
    shop = Shop(pg_admin_url)
    target = f"shop_roles_{secrets.token_hex(3)}"
    try:
        if pg18_admin_url == pg_admin_url:
            pytest.skip("needs a second cluster: the machine's server is the PostgreSQL 18")
        catalog, name = backup_of(shop, tmp_path)
        # Whoever can write to the bucket must not be able to mint a superuser through the saved roles.
        key = catalog.manifest(name).roles_key
        saved = json.loads(catalog.storage.read_bytes(key))
        for role in saved["roles"]:
            if role["name"] == shop.app:
                role.update(superuser=True, member_of=["pg_execute_server_program"])
        catalog.storage.put_bytes(key, json.dumps(saved).encode())
        choices = PrivilegeChoices.parse(create_roles=True)
        logged = []
        outcome = restore_to_database(
            catalog, name, PostgresTarget.from_url(pg18_admin_url), target, log=logged.append, privileges=choices
        )
        assert outcome.privileges.not_applied == [
            f"role {shop.app}: created without SUPERUSER; grant that by hand if it needs it",
            f"role {shop.app}: not made a member of pg_execute_server_program (grant that by hand if it needs it)",
        ]
        assert any("created roles" in line and "without passwords" in line for line in logged)
        with psycopg.connect(pg18_admin_url, autocommit=True) as conn:
            assert conn.execute(
                "SELECT rolsuper, pg_has_role(rolname, 'pg_execute_server_program', 'MEMBER') FROM pg_roles "
                "WHERE rolname = %s",
                (shop.app,),
            ).fetchone() == (False, False)
        with psycopg.connect(url_for(pg18_admin_url, target), autocommit=True) as conn:
            assert (
                conn.execute(
                    "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'shop.orders'::regclass"
                ).fetchone()[0]
                == shop.owner
            )
        with psycopg.connect(url_for(pg18_admin_url, target, shop.app), autocommit=True) as conn:
            conn.execute("INSERT INTO orders (note) VALUES ('new cluster')")
    finally:
        with psycopg.connect(pg18_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))
            for role in (shop.owner, shop.app):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        shop.drop()


def test_a_role_that_may_not_apply_privileges_is_told_exactly_what_it_could_not(pg_admin_url, tmp_path):
    shop = Shop(pg_admin_url)
    restorer = f"bp_rst_{secrets.token_hex(3)}"
    target = f"{shop.name}_byrestorer"
    shop.roles.insert(0, restorer)
    shop.databases.append(target)
    try:
        catalog, name = backup_of(shop, tmp_path)
        with shop.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(restorer)))
        server = PostgresTarget.from_url(url_for(pg_admin_url, "postgres", restorer))
        outcome = restore_to_database(catalog, name, server, target, log=quiet)
        not_applied = outcome.privileges.not_applied
        assert f'ALTER TABLE shop.orders OWNER TO {shop.owner}; (must be member of role "{shop.owner}")' in not_applied
        assert any(f'ALTER DATABASE "{target}" OWNER TO "{shop.owner}"' in line for line in not_applied)
        assert any(f'ALTER ROLE "{shop.app}" IN DATABASE "{target}" SET' in line for line in not_applied)
        assert not any("GRANT SELECT,INSERT,UPDATE ON TABLE shop.orders" in line for line in not_applied)
        assert outcome.tables == {"shop.orders": 20}
        # What it could apply, it did: the app's GRANTs (made by the owner there is) and the REVOKE CONNECT.
        with psycopg.connect(shop.url(target, shop.app), autocommit=True) as conn:
            conn.execute("INSERT INTO shop.orders (note) VALUES ('by the app')")
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            psycopg.connect(shop.url(target, shop.other)).close()
    finally:
        with shop.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))
        shop.drop()


def test_backup_without_privileges_restores_saying_so_and_verify_still_works(pg_admin_url, tmp_path):
    shop = Shop(pg_admin_url)
    target = f"{shop.name}_old"
    shop.databases.append(target)
    try:
        catalog, name = backup_of(shop, tmp_path)
        verify_backup(catalog, name, PostgresTarget.from_url(shop.admin_url), log=quiet)
        key = name.manifest_key(catalog.storage_prefix)
        manifest = json.loads(catalog.storage.read_bytes(key))
        for field in ("database_properties", "roles", "roles_key"):
            manifest.pop(field)  # as a backup taken before owners and privileges were kept
        catalog.storage.put_bytes(key, json.dumps(manifest).encode())
        outcome = restore_to_database(catalog, name, PostgresTarget.from_url(shop.admin_url), target, log=quiet)
        assert any("carries no owners or privileges" in note for note in outcome.privileges.notes)
        assert outcome.tables == {"shop.orders": 20}
    finally:
        shop.drop()


def test_prune_deletes_the_saved_roles_with_the_backup(pg_admin_url, tmp_path):
    shop = Shop(pg_admin_url)
    try:
        catalog, name = backup_of(shop, tmp_path)
        roles_key = catalog.manifest(name).roles_key
        entry = next(e for e in catalog.entries() if e.name == name)
        assert roles_key in entry.keys

        class Doomed:
            delete, keys = True, entry.keys

        apply_prune(catalog, [Doomed()])
        assert catalog.storage.head(roles_key) is None and catalog.entries() == []
    finally:
        shop.drop()


# ---- replication state -------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["installed", "bundled 18"])
def logical_server(request):
    """A throwaway server with wal_level=logical (the shared one may not have it): of the installed PostgreSQL
    (the machine's major) and of the bundled 18."""
    bin_dir = installed_server_bin() if request.param == "installed" else None
    if request.param == "installed" and bin_dir is None:
        pytest.skip("no installed PostgreSQL server binaries")
    server = ThrowawayServer(bin_dir, label="logical", settings={"wal_level": "logical"}).start()
    yield server
    server.stop()


def slot_database(admin_url: str, slot: str):
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT database, datoid FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
    return row


def test_a_replace_over_a_logical_slot_refuses_then_recreates_it_or_keeps_the_old_database(logical_server, tmp_path):
    shop = Shop(logical_server.url)
    slot = f"cdc_{secrets.token_hex(3)}"
    try:
        with psycopg.connect(shop.url(), autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        catalog, name = backup_of(shop, tmp_path)
        server = PostgresTarget.from_url(logical_server.url)
        old_oid = slot_database(logical_server.url, slot)[1]

        with pytest.raises(ConfigurationError, match=f"logical slot {slot} \\(plugin pgoutput\\).*Nothing was changed"):
            restore_to_database(catalog, name, server, shop.name, replace=True, log=quiet)
        assert slot_database(logical_server.url, slot) == (shop.name, old_oid)

        outcome = restore_to_database(
            catalog, name, server, shop.name, replace=True, log=quiet, replication="recreate-slots"
        )
        database, oid = slot_database(logical_server.url, slot)
        assert database == shop.name and oid != old_oid  # on the restored database now
        assert any(f"recreated logical slot {slot}" in note for note in outcome.privileges.notes)

        outcome = restore_to_database(catalog, name, server, shop.name, replace=True, log=quiet, replication="keep-old")
        kept = re.search(r"kept the old database as (\S+?),", " ".join(outcome.privileges.notes))[1]
        assert slot_database(logical_server.url, slot)[0] == kept
        with psycopg.connect(logical_server.url, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    finally:
        shop.drop()


def test_a_replace_over_a_subscription_reports_the_swap_and_what_was_left(logical_server, tmp_path):
    shop = Shop(logical_server.url)
    try:
        with psycopg.connect(shop.url(), autocommit=True) as conn:
            conn.execute(
                "CREATE SUBSCRIPTION shop_sub CONNECTION 'host=127.0.0.1 port=1 dbname=nowhere' PUBLICATION p "
                "WITH (connect = false)"
            )
            conn.execute("INSERT INTO shop.orders (note) VALUES ('after the backup')")
        catalog, name = backup_of(shop, tmp_path)
        with psycopg.connect(shop.url(), autocommit=True) as conn:
            conn.execute("INSERT INTO shop.orders (note) VALUES ('to be rolled back')")
        server = PostgresTarget.from_url(logical_server.url)
        with pytest.raises(ConfigurationError, match="subscription shop_sub"):
            restore_to_database(catalog, name, server, shop.name, replace=True, log=quiet)

        outcome = restore_to_database(
            catalog, name, server, shop.name, replace=True, log=quiet, replication="recreate-slots"
        )
        notes = " ".join(outcome.privileges.notes)
        assert f"{shop.name} is restored, but the old database could not be dropped" in notes
        left = re.search(r"it is left as (\S+?);", notes)[1]
        assert "bp_replaced_" not in left and "DROP SUBSCRIPTION shop_sub" in notes
        with psycopg.connect(shop.url(), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM shop.orders").fetchone()[0] == 21
        with psycopg.connect(shop.url(left), autocommit=True) as conn:
            conn.execute("ALTER SUBSCRIPTION shop_sub DISABLE")
            conn.execute("ALTER SUBSCRIPTION shop_sub SET (slot_name = NONE)")
            conn.execute("DROP SUBSCRIPTION shop_sub")
        with psycopg.connect(logical_server.url, autocommit=True) as conn:  # subscriptions are never restored
            assert (
                conn.execute(
                    "SELECT count(*) FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE d.datname = %s",
                    (shop.name,),
                ).fetchone()[0]
                == 0
            )
    finally:
        shop.drop()


def test_a_locale_the_server_lacks_is_refused_with_nothing_created(pg_admin_url, tmp_path):
    shop = Shop(pg_admin_url)
    target = f"{shop.name}_nolocale"
    shop.databases.append(target)
    try:
        catalog, name = backup_of(shop, tmp_path)
        key = name.manifest_key(catalog.storage_prefix)
        manifest = json.loads(catalog.storage.read_bytes(key))
        manifest["database_properties"]["collate"] = "xx_NOWHERE.LATIN1"
        catalog.storage.put_bytes(key, json.dumps(manifest).encode())
        with pytest.raises(
            ConfigurationError, match="encoding LATIN1 and locale xx_NOWHERE.LATIN1/C.*Nothing was created"
        ):
            restore_to_database(catalog, name, PostgresTarget.from_url(pg_admin_url), target, log=quiet)
        with shop.admin() as conn:  # the scratch database was never created: CREATE DATABASE itself refused
            assert not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,)).fetchall()
    finally:
        shop.drop()


def test_a_slot_in_use_by_a_consumer_is_recreated_on_the_restored_database(logical_server, tmp_path):
    shop = Shop(logical_server.url)
    slot = f"cdc_{secrets.token_hex(3)}"
    consumer = None
    try:
        with psycopg.connect(shop.url(), autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
        catalog, name = backup_of(shop, tmp_path)
        consumer = subprocess.Popen(
            [str(logical_server.bin_dir / "pg_recvlogical"), "--start", "--no-loop", "-S", slot, "-f", "-",
             f"--dbname={shop.url()}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=client_tools_environment(),
        )  # fmt: skip
        with psycopg.connect(logical_server.url, autocommit=True) as conn:
            for _ in range(50):
                if conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()[0]:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("pg_recvlogical never became the slot's consumer")
        server = PostgresTarget.from_url(logical_server.url)
        outcome = restore_to_database(
            catalog, name, server, shop.name, replace=True, log=quiet, replication="recreate-slots"
        )
        assert any(f"recreated logical slot {slot} (plugin test_decoding)" in n for n in outcome.privileges.notes)
        assert slot_database(logical_server.url, slot)[0] == shop.name
        assert consumer.wait(timeout=30) != 0  # its session was ended by the swap: it must reconnect
        with psycopg.connect(logical_server.url, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    finally:
        if consumer is not None and consumer.poll() is None:
            consumer.kill()
            consumer.wait()
        shop.drop()
