"""Scale-out costs: what the PostgreSQL store adds to a turn over SQLite, what a tenant's run slot
costs in Redis over the host's lock files, and the archive of a session's CLI home (size after 1 and
5 turns with the genuine CLIs, time to pack and to restore).

Starts its own PostgreSQL and Redis (as tests/services.py does); needs the pinned CLIs for the
archive part (``bash scripts/install-clis.sh``).

    python3 bench/scale.py [--turns 200] [--skip-archives]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clinvk.cluster_gate import RedisGate, redis_client  # noqa: E402
from clinvk.events import TokenUsage  # noqa: E402
from clinvk.gate import SharedGate  # noqa: E402
from clinvk.sessions import SqliteSessionStore, archive  # noqa: E402
from clinvk.sessions.postgresql import PostgresSessionStore  # noqa: E402
from tests.services import PostgresServer, running_redis  # noqa: E402


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def store_turn(store, session_id: str, payload: bytes | None) -> None:
    """The store calls of one continued turn: look the session up, take the turn, record it, give
    the turn back; on a shared store also check and save the home archive."""
    store.get(session_id)
    leases = hasattr(store, "acquire_turn")  # every store once the turn lease (issue 11) is in
    if leases:
        store.acquire_turn(session_id, "bench", 30)
    if payload is not None:
        store.archive_turn(session_id)
    store.record_turn(session_id, status="completed", token_usage=TokenUsage(10, 20))
    if payload is not None:
        store.save_archive(session_id, store.get(session_id).turn_count, payload)
    if leases:
        store.release_turn(session_id, "bench")


def bench_store(store, turns: int, payload: bytes | None) -> list[float]:
    session = store.create(backend="claude", initial_prompt="bench")
    for _ in range(10):  # warm the connection / pool
        store_turn(store, session.id, payload)
    times = []
    for _ in range(turns):
        start = time.perf_counter()
        store_turn(store, session.id, payload)
        times.append(time.perf_counter() - start)
    return times


def bench_gate(gate, runs: int) -> list[float]:
    """Take and give back one run slot, ``runs`` times."""
    times = []
    for _ in range(10 + runs):
        start = time.perf_counter()
        gate.acquire()
        gate.release()
        times.append(time.perf_counter() - start)
    return times[10:]


def bench_gates(tmp: Path, runs: int) -> dict[str, list[float]]:
    host = SharedGate(4, 0, 0, tmp / "gate")
    with running_redis(tmp) as url:
        cluster = RedisGate(redis_client(url), "bench", 4, 0, 0, lease_secs=30,
                            fallback=SharedGate(4, 0, 0, tmp / "fallback"), label="bench")
        return {"host (lock files)": bench_gate(host, runs), "cluster (Redis)": bench_gate(cluster, runs)}


def report(title: str, results: dict[str, list[float]]) -> None:
    print(title)
    for name, times in results.items():
        q = statistics.quantiles(times, n=20)
        print(f"  {name:22} median {ms(statistics.median(times))}  p95 {ms(q[18])}")


def bench_archives(tmp: Path) -> None:
    import pytest  # the harness reports a missing CLI through pytest.fail

    from tests.e2e.test_realcli_direct import Harness
    print("\narchive of a session's CLI home (genuine CLIs, loopback stubs; gzip level "
          f"{archive.COMPRESSION_LEVEL}; caches and login files left out)")
    print(f"{'backend':8} {'turns':>5} {'home bytes':>11} {'archive':>9} {'pack':>9} {'restore':>9}")
    for backend in ("claude", "codex", "gemini"):
        try:
            (tmp / backend).mkdir()
            harness = Harness(backend, tmp / backend)
        except pytest.fail.Exception as exc:
            print(f"{backend:8} skipped: {exc}")
            continue
        try:
            first = harness.ok("turn 1: say hello")
            for turns in (1, 5):
                if turns == 5:
                    for n in range(2, 6):
                        harness.ok(f"turn {n}", resume=first.session_id)
                home = harness.home
                raw = sum(p.stat().st_size for p in home.rglob("*") if p.is_file() and not p.is_symlink())
                packs, restores = [], []
                for _ in range(5):
                    start = time.perf_counter()
                    data = archive.pack({"home": home}, archive.EXCLUDED[backend])
                    packs.append(time.perf_counter() - start)
                    target = tmp / f"{backend}-restored" / "home"
                    target.parent.mkdir(exist_ok=True)
                    start = time.perf_counter()
                    archive.unpack(data, {"home": target})
                    restores.append(time.perf_counter() - start)
                print(f"{backend:8} {turns:>5} {raw:>11,} {len(data):>9,} {ms(statistics.median(packs)):>9}"
                      f" {ms(statistics.median(restores)):>9}")
        finally:
            harness.stub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--archive-bytes", type=int, default=60_000, help="archive saved per turn on PostgreSQL")
    parser.add_argument("--skip-archives", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clinvk-bench-scale-") as tmpdir:
        tmp = Path(tmpdir)
        server = PostgresServer().start()
        try:
            sqlite = SqliteSessionStore(tmp / "sessions.db")
            pg = PostgresSessionStore(server.create_database())
            payload = bytes(range(256)) * (args.archive_bytes // 256)
            results = {"sqlite": bench_store(sqlite, args.turns, None),
                       "postgresql": bench_store(pg, args.turns, None),
                       "postgresql + archive": bench_store(pg, args.turns, payload)}
            report(f"store calls of one continued turn ({args.turns} turns, loopback PostgreSQL 15, fsync off)",
                   results)
            pg.close()
            sqlite.close()
        finally:
            server.stop()
        report(f"a tenant's run slot taken and given back ({args.turns} runs, loopback Redis)",
               bench_gates(tmp, args.turns))
        if not args.skip_archives:
            bench_archives(tmp)


if __name__ == "__main__":
    main()
