"""The ownership and privilege statements a restore takes from an archive, and how a role map renames them."""

import pytest

from backup_pipeline.core.errors import ConfigurationError
from backup_pipeline.core.privileges import PrivilegeChoices, map_roles, parse_role_map, privilege_script

SCHEMA_SQL = """
--
-- Name: orders; Type: TABLE; Schema: shop; Owner: owner
--

CREATE TABLE shop.orders (
    id integer,
    note text DEFAULT 'ALTER TABLE x OWNER TO owner;'
);


ALTER TABLE shop.orders OWNER TO owner;

--
-- Name: hand_over(); Type: FUNCTION; Schema: shop; Owner: owner
--

CREATE FUNCTION shop.hand_over() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
EXECUTE $q$
ALTER TABLE shop.orders OWNER TO mallory;
$q$;
END $$;


ALTER FUNCTION shop.hand_over() OWNER TO owner;

SET default_tablespace = '';

--
-- Name: TABLE orders; Type: ACL; Schema: shop; Owner: owner
--

SET SESSION AUTHORIZATION "Grant Or";
GRANT SELECT ON TABLE shop.orders TO app WITH GRANT OPTION;
RESET SESSION AUTHORIZATION;
REVOKE ALL ON TABLE shop.orders FROM "Old App";

--
-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: shop; Owner: owner
--

ALTER DEFAULT PRIVILEGES FOR ROLE owner IN SCHEMA shop GRANT SELECT ON TABLES TO app;

\\unrestrict abc
"""


def test_the_script_holds_owners_then_acl_entries_and_nothing_else():
    script = privilege_script(SCHEMA_SQL)
    # A line of the same shape inside a function body is not an ownership statement.
    assert script.owners == [
        "ALTER TABLE shop.orders OWNER TO owner;",
        "ALTER FUNCTION shop.hand_over() OWNER TO owner;",
    ]
    assert len(script.acls) == 2 and script.acls[0].startswith('SET SESSION AUTHORIZATION "Grant Or";')
    assert "unrestrict" not in "".join(script.acls)


def test_a_role_map_renames_owners_grantees_grantors_and_for_role_only():
    mapping = {"owner": "new owner", "app": "app2", "Old App": "app3", "Grant Or": "g"}
    script = privilege_script(SCHEMA_SQL)
    assert map_roles(script.owners[0], mapping) == 'ALTER TABLE shop.orders OWNER TO "new owner";'
    assert map_roles(script.acls[0], mapping).splitlines() == [
        'SET SESSION AUTHORIZATION "g";',
        'GRANT SELECT ON TABLE shop.orders TO "app2" WITH GRANT OPTION;',
        "RESET SESSION AUTHORIZATION;",
        'REVOKE ALL ON TABLE shop.orders FROM "app3";',
    ]
    assert (
        map_roles(script.acls[1], mapping)
        == 'ALTER DEFAULT PRIVILEGES FOR ROLE "new owner" IN SCHEMA shop GRANT SELECT ON TABLES TO "app2";'
    )
    assert map_roles("GRANT SELECT ON TABLE shop.orders TO PUBLIC;", mapping).endswith("TO PUBLIC;")


def test_a_role_map_must_be_old_equals_new():
    assert parse_role_map(["a=b", " c = d "]) == {"a": "b", "c": "d"}
    for bad in (["a"], ["=b"], ["a="], ["a=b", "a=c"]):
        with pytest.raises(ConfigurationError, match="role-map"):
            parse_role_map(bad)


def test_no_owner_and_no_acl_leave_out_only_what_they_name():
    both = PrivilegeChoices(no_owner=True, no_acl=True)
    assert both.skips(["owner", "grantee", "setting"]) and not both.skips(["policy"])
    assert PrivilegeChoices(no_owner=True).skips(["owner", "database owner"])
    assert not PrivilegeChoices(no_owner=True).skips(["owner", "grantee"])
