"""The server key and a night's batches (core/servers.py): pure functions, no server needed."""

from backup_pipeline.core.config import DatabaseSettings
from backup_pipeline.core.servers import lane_name, plan_batches, server_key


def test_the_server_key_is_host_and_port_never_the_user_or_password():
    assert server_key("postgresql://app:s3cret@DB.example.com:25060/app?sslmode=require") == "db.example.com:25060"
    assert server_key("postgresql://app@db.example.com/app") == "db.example.com:5432"
    assert server_key("host=10.0.0.5 port=6432 dbname=app user=app password=s3cret") == "10.0.0.5:6432"
    assert server_key("postgresql://app@primary:5432,replica:5433/app") == "primary:5432"
    assert server_key(None) == server_key("") == server_key("postgresql://[broken") == "unknown"


def _dbs(count: int, url_env: str, **fields) -> list[DatabaseSettings]:
    return [DatabaseSettings(key=f"{url_env.lower()}_{i:02d}", url_env=url_env, **fields) for i in range(count)]


def test_each_server_gets_its_own_batches_dealt_round_its_own_lanes():
    environ = {"A_URL": "postgresql://u@a.example:5432/x", "B_URL": "postgresql://u@b.example:5432/x"}
    databases = _dbs(7, "A_URL", batch_size=3, server_max_runs=2) + _dbs(2, "B_URL", batch_size=3)
    batches = plan_batches(databases, environ)
    a = [b for b in batches if b.server == "a.example:5432"]
    assert [len(b.keys) for b in a] == [3, 3, 1] and [b.lane for b in a] == [0, 1, 0]
    assert [b.lane_name for b in a] == [lane_name("a.example:5432", lane) for lane in (0, 1, 0)]
    [b] = [b for b in batches if b.server == "b.example:5432"]
    assert b.keys == ("b_url_00", "b_url_01") and b.lane == 0
    # Every database in exactly one batch; no jitter: all due at the tick.
    assert sorted(k for batch in batches for k in batch.keys) == sorted(db.key for db in databases)
    assert {batch.delay_s for batch in batches} == {0}


def test_a_server_takes_the_smallest_budget_and_batch_its_databases_give_and_spreads_over_its_window():
    environ = {"A_URL": "postgresql://u@a.example/x"}
    databases = _dbs(6, "A_URL", batch_size=2, schedule_jitter_minutes=30) + [
        DatabaseSettings(key="zz_small", url_env="A_URL", server_max_runs=1, batch_size=5)
    ]
    batches = plan_batches(databases, environ)
    assert {b.lane for b in batches} == {0}  # the one database asking for a budget of 1 holds its server to it
    assert [len(b.keys) for b in batches] == [2, 2, 2, 1]
    # Spread evenly over the 30 minutes after the tick, in key order.
    assert [round(b.delay_s) for b in batches] == [round(30 * 60 * i / 7) for i in (0, 2, 4, 6)]
