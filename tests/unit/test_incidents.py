"""One alert per incident (core/incidents.py): grouping by cause and place over a window, then one recovery."""

from backup_pipeline.core.incidents import SERVER_UNREACHABLE, STORAGE_FAILING, Outcome, Post, cause_of, step
from backup_pipeline.core.notify.discord import DISCORD_MARKUP
from backup_pipeline.core.notify.events import incident_event
from backup_pipeline.core.notify.text import render


def _text(post: Post) -> str:
    return render(incident_event(post.incident, post.over), DISCORD_MARKUP).text()


def _down(name: str, at: float, where: str = "db1:5432") -> Outcome:
    return Outcome(name, ok=False, at=at, cause=SERVER_UNREACHABLE, where=where, error="refused", run_id=f"run-{name}")


def test_causes():
    assert cause_of('connection to server at "10.0.0.5", port 5432 failed: Connection refused') == SERVER_UNREACHABLE
    assert cause_of("cannot reach the bucket 'x' at https://fra1.example") == STORAGE_FAILING
    assert cause_of("backup x already exists in storage: a backup is never overwritten") is None
    assert cause_of("verification failed: table a has 3 rows, the manifest says 4") is None


def test_a_down_server_is_one_message_then_one_recovery():
    state, posts = step({}, [_down("a", 100), _down("b", 101)], now=102, window_s=60)
    assert posts == []  # the window is still open
    state, posts = step(state, [_down("c", 130), _down("x", 131, where="db2:5432")], now=161, window_s=60)
    assert (
        len(posts) == 1 and "3 backups failed: server unreachable" in _text(posts[0]) and "db1:5432" in _text(posts[0])
    )
    assert "`a`, `b`, `c`" in _text(posts[0]) and "Error: refused" in _text(posts[0])
    state, posts = step(state, [_down("d", 170)], now=192, window_s=60)  # joins the open incident silently
    assert posts == [Post(run_id="run-x")]  # db2's lone failure keeps its own message (its run's)
    state, posts = step(state, [Outcome(n, ok=True, at=300) for n in "abc"], now=301, window_s=60)
    assert posts == []  # d has no backup yet
    state, posts = step(state, [Outcome("d", ok=True, at=310)], now=311, window_s=60)
    assert len(posts) == 1 and posts[0].over
    assert "Recovered: server unreachable" in _text(posts[0]) and "`a`, `b`, `c`, `d`" in _text(posts[0])
    state, posts = step(state, [Outcome("a", ok=True, at=400)], now=401, window_s=60)
    assert posts == [] and [i["where"] for i in state["incidents"]] == ["db2:5432"]  # x not yet back
