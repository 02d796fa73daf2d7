"""Stand-in benchmarks for the harness tests (tests/bench/test_smoke.py): `bench/smoke.py`
runs each in a fresh interpreter, as it runs the real ones."""

import time

from bench.common import Figure


def meets() -> list[Figure]:
    print("measuring ...")
    return [Figure("fake ratio", 1.5, "ratio", "<= 2.0"), Figure("fake p50", 3.2, "ms")]


def misses() -> list[Figure]:
    return [Figure("fake ratio", 1.5, "ratio", "<= 2.0"),
            Figure("fake throughput", 0.8, "ratio", ">= 1.6")]


def wrong_answer() -> list[Figure]:
    raise AssertionError("the API answered 500, expected 201")


def broken() -> list[Figure]:
    return {}["a bug in the bench script"]


def hangs() -> list[Figure]:
    time.sleep(120)
    return []
