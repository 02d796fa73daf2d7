"""Does serving through ASGI cost the synchronous API? bench/ab.py's mixed workload (50 % hub
reads, 40 % outcome event writes, 10 % controls) against the same code served two ways, side
by side in one run:

    .venv/bin/python bench/asgi_vs_wsgi.py [--seconds 60] [--rounds 12] [--concurrency 8]

- WSGI: gunicorn, one worker with 4 threads (gthread), as compose serves the API;
- ASGI: gunicorn, one uvicorn worker (`-k uvicorn_worker.UvicornWorker`, agent33.asgi), where
  Django runs each synchronous view in a thread of its own.
Each gets its own fresh PostgreSQL database, the same settings (DEBUG=0, LOG_LEVEL=INFO, one
database connection kept per thread for WSGI, a pool of 8 for ASGI, where each request runs in
a thread of its own), and ABBA rounds. Prints ASGI ÷ WSGI throughput (target
>= 0.9: below it, the README's serving decision keeps the API on WSGI and serves the stream
from its own ASGI process) and the CPU per request of each worker and its PostgreSQL
backends, which moves far less than throughput on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.ab import cpu_seconds
from bench.common import (
    PG_ADMIN_URL,
    Figure,
    MixedLoad,
    bench_env,
    database_name,
    drive_abba,
    drop_postgres_database,
    fresh_postgres_database,
    gunicorn,
    manage,
    missed,
)

TARGET = 0.9
WARM_UP_SECONDS = 3.0

SERVING = {
    "wsgi": {"application": "agent33.wsgi:application", "threads": 4, "extra": (),
             "env": {"DB_CONN_MAX_AGE": "3600"}},
    # Under ASGI every request's view runs in a new thread: connections come from a pool.
    "asgi": {"application": "agent33.asgi:application", "threads": 1,
             "extra": ("-k", "uvicorn_worker.UvicornWorker"), "env": {"DB_POOL_SIZE": "8"}},
}


def worker_pids(pidfile: Path) -> list[int]:
    master = int(pidfile.read_text().strip())
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


@dataclass
class ServedLoad(MixedLoad):
    database: str = ""
    pids: tuple[int, ...] = ()
    worker_cpu: float = 0.0
    database_cpu: float = 0.0

    def cpu(self) -> tuple[float, float]:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("postgres://", "postgresql://")) as conn:
            backends = [pid for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s",
                [database_name(self.database)])]
        return cpu_seconds(list(self.pids)), cpu_seconds(backends)

    def drive(self, seconds: float) -> None:
        worker, database = self.cpu()
        super().drive(seconds)
        worker_after, database_after = self.cpu()
        self.worker_cpu += worker_after - worker
        self.database_cpu += database_after - database

    def warm_up(self, seconds: float) -> None:
        super().warm_up(seconds)
        self.worker_cpu = self.database_cpu = 0.0

    @property
    def cpu_per_request(self) -> float:
        return (self.worker_cpu + self.database_cpu) / self.requests

    def report(self) -> None:
        super().report()
        print(f"    CPU per request: worker {self.worker_cpu / self.requests * 1000:.2f} ms, "
              f"PostgreSQL {self.database_cpu / self.requests * 1000:.2f} ms")


def run(*, seconds: float = 60, rounds: int = 12, concurrency: int = 8,
        target: float | None = TARGET) -> list[Figure]:
    loads: dict[str, ServedLoad] = {}
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agent33-asgi-")))
        for name, serving in SERVING.items():
            database = f"agent33_serving_{name}"
            env = bench_env(fresh_postgres_database(database), LOG_LEVEL="INFO",
                            **serving["env"])
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            stack.callback(drop_postgres_database, database)
            manage(env, "migrate", "--noinput")
            manage(env, "create_tenant", "bench")
            token = manage(env, "issue_token", "--tenant", "bench", "--scopes", "admin")
            token = token.strip().splitlines()[-1]
            pidfile = scratch / f"{name}.pid"
            log = stack.enter_context(open(scratch / f"{name}.log", "w"))
            url = stack.enter_context(gunicorn(
                env, application=serving["application"], threads=serving["threads"],
                extra_args=(*serving["extra"], "--pid", str(pidfile)), stdout=log, stderr=log))
            load = ServedLoad.prepare(name.upper(), url, token, concurrency)
            load.database, load.pids = database, tuple(worker_pids(pidfile))
            load.warm_up(WARM_UP_SECONDS)
            loads[name] = load
        drive_abba(loads["wsgi"], loads["asgi"], rounds=rounds, seconds=seconds / rounds)
    wsgi, asgi = loads["wsgi"], loads["asgi"]
    for load in (wsgi, asgi):
        load.report()
    per_round = [a / w for w, a in zip(wsgi.round_rates, asgi.round_rates, strict=True)]
    ratio = asgi.rate / wsgi.rate
    cpu_ratio = asgi.cpu_per_request / wsgi.cpu_per_request
    print("per-round ASGI ÷ WSGI: " + ", ".join(f"{r:.2f}" for r in per_round)
          + f"  (median {statistics.median(per_round):.2f})")
    shown = f"  (target >= {target})" if target is not None else ""
    print(f"throughput ASGI ÷ WSGI: {ratio:.2f}{shown}")
    print(f"CPU per request (worker + PostgreSQL) ASGI ÷ WSGI: {cpu_ratio:.2f}")
    return [
        Figure("throughput, ASGI ÷ WSGI", ratio, "ratio",
               f">= {target}" if target is not None else None),
        Figure("throughput, WSGI", wsgi.rate, "req/s"),
        Figure("throughput, ASGI", asgi.rate, "req/s"),
        Figure("CPU per request, ASGI ÷ WSGI", cpu_ratio, "ratio"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    figures = run(seconds=args.seconds, rounds=args.rounds, concurrency=args.concurrency)
    return 1 if missed(figures) else 0


if __name__ == "__main__":
    sys.exit(main())
