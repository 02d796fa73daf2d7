"""Did this change make requests slower? The mixed workload against a git ref and HEAD, side
by side.

    .venv/bin/python bench/ab.py REF [--seconds 60] [--rounds 12] [--concurrency 8]
                                     [--target 0.95] [--profile wall|cpu]

REF (a commit, tag or branch) is exported with `git archive` into a temporary directory; HEAD
is this checkout as it is on disk, uncommitted changes included. Each side gets:
- its own fresh PostgreSQL database (`agent33_ab_ref`, `agent33_ab_head`, prefixed with
  $BENCH_DB_PREFIX when set), migrated by its own code;
- one gunicorn worker (sync, one thread: a request's full cost shows as throughput), the
  same command-line settings for both, started in its checkout so that it reads that
  checkout's gunicorn.conf.py, if it has one;
- the environment a deployment runs with: DEBUG=0 and LOG_LEVEL=INFO (so the access log
  lines a release writes are part of what it costs), each server's output going to its own
  file in reports/ab/. Without REDIS_URL both run embedded (the cache per process); with it
  in the environment, both use it.
Both sides run from this virtualenv with PYTHONPATH pointing at their own tree, unless REF
declares a dependency this virtualenv does not satisfy: then REF gets a virtualenv of its own
with its dependencies, made in the temporary directory (this needs the package index). Before
measuring, every server is asked which directories its code was imported from
(bench/ab_probe) and the bench stops unless each runs its own tree.

The workload is bench/scale_workers.py's (50 % hub reads, 40 % outcome event writes, 10 %
controls, from lean socket clients in this process). The seconds are split into rounds that
alternate between the two servers in ABBA order (REF HEAD, HEAD REF, ...), both running the
whole time, after a short warm-up of each; the bench prints the HEAD ÷ REF throughput of
every round and of the whole run. Target against 429cd63 (the last commit before the second
wave's observability): >= 0.95.

`--profile` samples each worker with py-spy (a dev dependency) while its rounds run:
`wall` every moment of a request, waits on PostgreSQL included (one sync worker's
throughput is one over its wall time per request), `cpu` only moments holding the GIL (the
Python work). It writes reports/ab/<side>.folded (collapsed stacks, for speedscope or
flamegraph.pl) and prints the functions holding the most of each worker's request time.
The sampler costs both sides alike, but read the ratio from a run without it.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import venv
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx
from packaging.requirements import Requirement

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    PG_ADMIN_URL,
    ROOT,
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

PROBE_DIR = Path(__file__).resolve().parent / "ab_probe"
LOGS = ROOT / "reports" / "ab"
WARM_UP_SECONDS = 2.0
TARGET = 0.95


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()


def export(ref: str, into: Path) -> str:
    """REF's tree in `into`; returns its commit."""
    try:
        commit = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"{ref!r} is not a commit of this clone (a shallow clone lacks old "
                         "ones: git fetch --unshallow)") from None
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return commit


def unmet_dependencies(tree: Path) -> list[str]:
    """REF's declared dependencies (pyproject.toml) that this virtualenv does not satisfy."""
    project = tomllib.loads((tree / "pyproject.toml").read_text())["project"]
    unmet = []
    for text in project.get("dependencies", []):
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            unmet.append(text)
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(text)
    return unmet


def python_for(tree: Path, scratch: Path) -> str:
    """This virtualenv's Python when it has what REF declares, else a new one with REF's
    dependencies (so a REF that needs another library, or another version of one, still runs
    its own way)."""
    unmet = unmet_dependencies(tree)
    if not unmet:
        return sys.executable
    print(f"REF needs what this virtualenv lacks ({', '.join(unmet)}): "
          f"installing REF's dependencies into a virtualenv of its own …", flush=True)
    project = tomllib.loads((tree / "pyproject.toml").read_text())["project"]
    environment = scratch / "ref-venv"
    venv.create(environment, with_pip=True)
    python = str(environment / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", *project["dependencies"]],
                   check=True)
    return python


PROFILES = {"wall": "--idle", "cpu": "--gil"}


@contextmanager
def sampled(pid: int, output: Path, profile: str):
    """py-spy recording `pid` until the block ends (`profile`: a key of PROFILES)."""
    spy = subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid),
         PROFILES[profile], "--rate", "200", "--nonblocking", "--format", "raw",
         "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        spy.wait(timeout=60)


def hot_functions(folded: Path, top: int = 25) -> list[tuple[float, str]]:
    """The functions holding the most samples (with their callees), as shares of the
    request-handling samples; frames of the harness (in nearly every sample) left out."""
    inclusive: Counter[str] = Counter()
    handling = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        if not any(".handle_request (" in frame for frame in frames):
            continue  # waiting in accept(), or gunicorn's own loop
        handling += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    shares = [(n / handling, frame) for frame, n in inclusive.most_common()]
    return [(share, frame) for share, frame in shares if share < 0.97][:top]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


class Side:
    """One version of the code: its tree, database, token and server."""

    def __init__(self, name: str, label: str, tree: Path, python: str) -> None:
        self.name, self.label, self.tree, self.python = name, label, tree, python
        self.database = f"agent33_ab_{name}"
        self.pid = 0

    def set_up(self) -> tuple[dict[str, str], str]:
        """A fresh database migrated by this side's own code, and an admin token."""
        # One database connection for the whole run (the default renews it every 60 s), so
        # that the CPU of the backend serving the worker is counted whole.
        env = bench_env(fresh_postgres_database(self.database),
                        PYTHONPATH=f"{self.tree}:{PROBE_DIR}", LOG_LEVEL="INFO",
                        DB_CONN_MAX_AGE="3600")
        for name in ("PROMETHEUS_MULTIPROC_DIR", "DJANGO_SETTINGS_MODULE"):
            env.pop(name, None)
        run = {"root": self.tree, "python": self.python}
        manage(env, "migrate", "--noinput", **run)
        manage(env, "create_tenant", "bench", **run)
        token = manage(env, "issue_token", "--tenant", "bench", "--scopes", "admin", **run)
        return env, token.strip().splitlines()[-1]

    def check_code(self, url: str) -> int:
        """Stop unless the server imported every package from this side's own tree; returns
        the worker's process id."""
        answer = httpx.get(f"{url}/__ab__/code", timeout=10).json()
        wrong = {name: path for name, path in answer["code"].items() if Path(path) != self.tree}
        if wrong:
            raise SystemExit(f"{self.label}: the server runs code from elsewhere: {wrong}")
        print(f"{self.label}: worker {answer['pid']} serves {', '.join(answer['code'])} "
              f"from {self.tree}", flush=True)
        return answer["pid"]

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of the worker, and of the PostgreSQL backends serving it."""
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("postgres://", "postgresql://")) as conn:
            backends = [pid for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s",
                [database_name(self.database)])]
        return cpu_seconds([self.pid]), cpu_seconds(backends)


@dataclass
class ServerLoad(MixedLoad):
    """MixedLoad plus the CPU its server and PostgreSQL spent on it: unlike throughput, CPU
    per request barely moves when other work loads the machine."""

    side: Side | None = None
    worker_cpu: float = 0.0
    database_cpu: float = 0.0

    def drive(self, seconds: float) -> None:
        worker, database = self.side.cpu()
        super().drive(seconds)
        worker_after, database_after = self.side.cpu()
        self.worker_cpu += worker_after - worker
        self.database_cpu += database_after - database

    def warm_up(self, seconds: float) -> None:
        super().warm_up(seconds)
        self.worker_cpu = self.database_cpu = 0.0

    def report(self) -> None:
        super().report()
        print(f"    CPU per request: worker {self.worker_cpu / self.requests * 1000:.2f} ms, "
              f"PostgreSQL {self.database_cpu / self.requests * 1000:.2f} ms; "
              f"worker wall time per request {1000 / self.rate:.2f} ms")

    @property
    def cpu_per_request(self) -> float:
        return (self.worker_cpu + self.database_cpu) / self.requests


def run(
    ref: str = "429cd63",
    *,
    seconds: float = 60,
    rounds: int = 12,
    concurrency: int = 8,
    target: float | None = TARGET,
    profile: str | None = None,
) -> list[Figure]:
    """The measurement; returns its figures (`make bench-smoke` runs it for fewer seconds)."""
    if profile and not shutil.which("py-spy", path=str(Path(sys.executable).parent)):
        raise SystemExit("--profile needs py-spy in this virtualenv (pip install -e '.[dev]')")
    head_commit = git("rev-parse", "--short", "HEAD")
    dirty = "+uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    LOGS.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agent33-ab-")))
        ref_tree = scratch / "ref"
        ref_commit = export(ref, ref_tree)
        sides = (
            Side("ref", f"REF {ref} ({ref_commit[:9]})", ref_tree.resolve(),
                 python_for(ref_tree, scratch)),
            Side("head", f"HEAD ({head_commit}{dirty})", ROOT, sys.executable),
        )
        loads = []
        for side in sides:
            env, token = side.set_up()
            stack.callback(drop_postgres_database, side.database)
            log = stack.enter_context(open(LOGS / f"{side.name}.log", "w"))
            url = stack.enter_context(gunicorn(
                env, root=side.tree, python=side.python, application="ab_probe:application",
                stdout=log, stderr=log))
            side.pid = side.check_code(url)
            load = ServerLoad.prepare(side.label, url, token, concurrency)
            load.side = side
            load.warm_up(WARM_UP_SECONDS)
            loads.append(load)
        ref_load, head_load = loads
        if profile:
            for side in sides:
                stack.enter_context(sampled(side.pid, LOGS / f"{side.name}.folded", profile))
        drive_abba(ref_load, head_load, rounds=rounds, seconds=seconds / rounds)
    for load in loads:
        load.report()
    per_round = [h / r for r, h in zip(ref_load.round_rates, head_load.round_rates, strict=True)]
    ratio = head_load.rate / ref_load.rate
    cpu_ratio = head_load.cpu_per_request / ref_load.cpu_per_request
    print("per-round HEAD ÷ REF: " + ", ".join(f"{r:.2f}" for r in per_round)
          + f"  (median {statistics.median(per_round):.2f})")
    shown_target = f"  (target >= {target})" if target is not None else ""
    print(f"throughput HEAD ÷ REF: {ratio:.2f}{shown_target}")
    print(f"CPU per request (worker + PostgreSQL) HEAD ÷ REF: {cpu_ratio:.2f}")
    print(f"server logs: {LOGS.relative_to(ROOT)}/ref.log, head.log")
    if profile:
        for side in sides:
            print(f"\n{side.label}: share of the worker's request time ({profile} profile, "
                  f"{LOGS.relative_to(ROOT)}/{side.name}.folded)")
            for share, frame in hot_functions(LOGS / f"{side.name}.folded"):
                print(f"  {share * 100:5.1f} %  {frame}")
    return [
        Figure(f"throughput, HEAD ÷ {ref}", ratio, "ratio",
               f">= {target}" if target is not None else None),
        Figure(f"throughput, {ref}", ref_load.rate, "req/s"),
        Figure("throughput, HEAD", head_load.rate, "req/s"),
        Figure("lowest per-round ratio", min(per_round), "ratio"),
        Figure("highest per-round ratio", max(per_round), "ratio"),
        Figure("CPU per request, HEAD ÷ REF", cpu_ratio, "ratio"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", help="a commit, tag or branch to compare HEAD with")
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds per side")
    parser.add_argument("--rounds", type=int, default=12, help="rounds per side (ABBA order)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--target", type=float, default=TARGET,
                        help="HEAD ÷ REF throughput to reach (0: none)")
    parser.add_argument("--profile", choices=sorted(PROFILES),
                        help="sample both workers with py-spy and print where their time goes")
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.rounds % 2:
        parser.error("--rounds must be even (ABBA order gives both sides the same positions)")
    figures = run(args.ref, seconds=args.seconds, rounds=args.rounds,
                  concurrency=args.concurrency, target=args.target or None,
                  profile=args.profile)
    return 1 if missed(figures) else 0


if __name__ == "__main__":
    sys.exit(main())
