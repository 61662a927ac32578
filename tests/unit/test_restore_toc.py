"""Which entries of an archive's table of contents a restore leaves out, for which role."""

from __future__ import annotations

from backup_pipeline.core.restore import TargetRole, filter_table_of_contents

# `pg_restore --list` of a managed database dumped by its provider's superuser (abridged).
TOC = """;
; Selected TOC Entries:
;
9; 2615 16441 SCHEMA - app doadmin
3; 3079 16432 EXTENSION - plpython3u 
2627; 0 0 COMMENT - EXTENSION plpython3u 
4; 3079 16433 EXTENSION - pgcrypto 
2629; 0 0 COMMENT - EXTENSION pgcrypto 
246; 1255 16437 FUNCTION public provider_ddl_audit() provider_admin
226; 1259 16444 TABLE app users doadmin
2615; 0 16444 TABLE DATA app users doadmin
2614; 6104 16489 PUBLICATION - p_sch provider_admin
2613; 6104 16487 PUBLICATION - p_tab provider_admin
2641; 0 0 COMMENT - PUBLICATION p_tab provider_admin
2612; 6104 16439 PUBLICATION - provider_all_tables provider_admin
2616; 6106 16488 PUBLICATION TABLE app p_tab users provider_admin
2617; 6237 16490 PUBLICATION TABLES IN SCHEMA billing p_sch billing provider_admin
2618; 6100 16440 SUBSCRIPTION - provider_replica provider_admin
2449; 3466 16438 EVENT TRIGGER - provider_ddl_audit provider_admin
2642; 0 0 COMMENT - EVENT TRIGGER provider_ddl_audit provider_admin
"""

DOADMIN = TargetRole("doadmin", superuser=False, untrusted_extensions=frozenset({"plpython3u", "pg_stat_statements"}))
SUPERUSER = TargetRole("postgres", superuser=True, untrusted_extensions=DOADMIN.untrusted_extensions)


def test_a_role_that_is_not_a_superuser_leaves_out_what_only_a_superuser_creates():
    kept, left_out = filter_table_of_contents(TOC, DOADMIN)
    assert left_out == [
        "EXTENSION plpython3u",
        "COMMENT ON EXTENSION plpython3u",
        "PUBLICATION p_sch",
        "PUBLICATION provider_all_tables",
        "SUBSCRIPTION provider_replica",
        "EVENT TRIGGER provider_ddl_audit",
        "COMMENT ON EVENT TRIGGER provider_ddl_audit",
    ]
    # A trusted extension, a publication of single tables (and its comment), the app's own objects stay.
    for line in (
        "EXTENSION - pgcrypto",
        "COMMENT - EXTENSION pgcrypto",
        "PUBLICATION - p_tab",
        "COMMENT - PUBLICATION p_tab",
        "PUBLICATION TABLE app p_tab users",
        "TABLE DATA app users",
        "FUNCTION public provider_ddl_audit()",
    ):
        assert line in kept
    for line in ("plpython3u", "provider_all_tables", "SUBSCRIPTION", "EVENT TRIGGER", "p_sch"):
        assert line not in kept


def test_a_superuser_restores_everything_but_subscriptions():
    kept, left_out = filter_table_of_contents(TOC, SUPERUSER)
    assert left_out == ["SUBSCRIPTION provider_replica"]
    assert kept.count("\n") == TOC.count("\n") - 1


def test_nothing_to_leave_out_leaves_the_list_whole():
    plain = "\n".join(line for line in TOC.splitlines() if "SUBSCRIPTION" not in line) + "\n"
    assert filter_table_of_contents(plain, SUPERUSER) == (plain, [])
