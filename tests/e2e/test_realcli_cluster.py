"""Several hosts with the genuine CLIs: a session begun through host 1 is continued through hosts 2
and 3, each host restoring the session's CLI home from the store (tests/cluster.py: each host has its
own state directory and host name; PostgreSQL and Redis from tests/services.py)."""

from __future__ import annotations

import pytest

from tests.cluster import Cluster
from tests.e2e.test_realcli_homes import transcripts
from tests.services import postgres_db, postgres_server, redis_service  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.realcli, pytest.mark.gunicorn]


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_a_session_continues_through_every_host_with_its_whole_history(
        realcli_config, stubs, postgres_db, redis_service, tmp_path, backend):
    workdir = tmp_path / "work"  # a workdir the client names: the same path on every host (shared storage)
    workdir.mkdir()
    with Cluster(tmp_path / "cluster", postgres_db, redis_service, config=realcli_config, nginx=False) as cluster:
        one, two, three = cluster.hosts
        first = one.post("/api/v1/prompt", {"backend": backend, "prompt": "turn one", "workdir": str(workdir)},
                         timeout=180)
        assert first.status_code == 200 and first.json()["exit_code"] == 0, first.text
        sid = first.json()["session_id"]
        for n, (word, host) in enumerate((("two", two), ("three", three)), start=2):
            answer = host.post("/api/v1/prompt", {"session_id": sid, "prompt": f"turn {word}"}, timeout=180)
            assert answer.status_code == 200, answer.text
            assert answer.json()["output"] == f"echo: turn {word}", answer.json()
            seen = [r for r in stubs[backend].requests if r.get("user_text") == f"turn {word}"][-1]
            # Every earlier user turn and answer reached the vendor API again, from a host that never
            # ran the session before this turn.
            assert seen["n_turns"] >= 2 * n - 1, seen
            assert transcripts(host.home / "homes" / sid, backend), f"host {n} has no transcript"
        assert one.get(f"/api/v1/sessions/{sid}").json()["turn_count"] == 3
