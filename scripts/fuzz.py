"""Fuzz the whole API from its own OpenAPI schema with Schemathesis (`make fuzz`).

A scratch database gets two tenants and an operator; a real gunicorn serves it on 127.0.0.1;
`st run` then exercises every operation with each of the three tokens, checking
not_a_server_error, status_code_conformance, content_type_conformance and
response_schema_conformance, in four phases: the schema's examples, coverage of its
boundaries, random fuzzing, and stateful sequences that follow the schema's OpenAPI links
(create -> read/act on what was created). The seed is printed so a failure can be replayed:
`FUZZ_SEED=<seed> make fuzz`. FUZZ_EXAMPLES (default 100) sets examples per operation.

The database is a SQLite file in a scratch folder, or FUZZ_DATABASE_URL (CI: an empty
PostgreSQL database, where offsets, ranges and types are stricter than SQLite's).
A "missing test data" warning (an operation that only ever answered 404) fails the run: it
means the fuzzer never reached the objects behind that route.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import bench_env, gunicorn, manage  # noqa: E402

# Seeds both fuzz tenants with each app's demo records and prints every object id, so the
# fuzzer reaches real objects (its own and the other tenant's) instead of only 404s.
SEED_AND_LIST_IDS = """
import json
from django.apps import apps
from agent33.tenancy.context import tenant_scope
from agent33.tenancy.models import Tenant, TenantOwnedModel
for tenant in Tenant.objects.filter(slug__in=["fuzz-a", "fuzz-b"]):
    with tenant_scope(tenant):
        for app in ("operations", "multimodal", "outcomes"):
            __import__(app + ".demo", fromlist=["seed_demo"]).seed_demo(tenant=tenant)
ids = []
for model in apps.get_models():
    if issubclass(model, TenantOwnedModel) and model._meta.pk.get_internal_type() == "CharField":
        ids += list(model.all_tenants.values_list("pk", flat=True)[:200])
print(json.dumps(ids))
"""

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


def main() -> int:
    seed = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(2**31))
    examples = os.environ.get("FUZZ_EXAMPLES", "100")
    workdir = Path(tempfile.mkdtemp(prefix="agent33-fuzz-"))
    database_url = os.environ.get("FUZZ_DATABASE_URL") or f"sqlite:///{workdir / 'fuzz.sqlite3'}"
    print(f"Fuzzing on {database_url.split(':')[0]}.", flush=True)
    env = bench_env(
        database_url,
        MEDIA_ROOT=str(workdir / "media"),
        AGENT33_TOKEN_CACHE_SECONDS="10",
        # Configured as a production server must be: without an encryption key, storing a
        # provider key is refused with 503 (a server fault), which the fuzzer rightly flags.
        AGENT33_SECRET_KEYS=Fernet.generate_key().decode(),
    )
    env.pop("CELERY_BROKER_URL", None)
    manage(env, "migrate", "--noinput")
    tokens = {}
    for slug in ("fuzz-a", "fuzz-b"):
        manage(env, "create_tenant", slug)
        out = manage(env, "issue_token", "--tenant", slug, "--scopes", "admin")
        tokens[slug] = out.strip().splitlines()[-1]
    out = manage(env, "issue_token", "--all-tenants", "--scopes", "admin", "--name", "operator")
    tokens["operator"] = out.strip().splitlines()[-1]
    ids = json.loads(manage(env, "shell", "-c", SEED_AND_LIST_IDS).strip().splitlines()[-1])
    config = workdir / "schemathesis.toml"
    config.write_text(
        "[warnings]\n"
        'fail-on = ["missing_test_data"]\n'
        "[dictionaries.ids]\n"
        f"values = {json.dumps(ids)}\n"
        "[dictionaries.tenants]\n"
        'values = ["fuzz-a", "fuzz-b", "nobody"]\n'
        "[parameters]\n"
        '"path.id" = { dictionary = "ids", probability = 0.5 }\n'
        '"path.process_id" = { dictionary = "ids", probability = 0.5 }\n'
        '"path.tenant_id" = { dictionary = "tenants", probability = 0.7 }\n'
    )
    print(f"Fuzzing with {len(ids)} real object ids of both tenants.", flush=True)

    print(f"Schemathesis seed: {seed}  (replay with FUZZ_SEED={seed} make fuzz)", flush=True)
    failed = False
    # gunicorn's own 414 for request lines over 4 KB is an HTML page outside the API's
    # contract (a proxy in front sets its own limit), so the fuzzed server lifts it.
    with gunicorn(env, workers=1, threads=4, extra_args=("--limit-request-line", "0")) as url:
        for who, token in tokens.items():
            print(f"\n=== fuzzing as {who}", flush=True)
            command = [
                sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
                "run", f"{url}/v1/schema/?format=json",
                "--url", url,
                "--checks", CHECKS,
                "--max-examples", examples,
                "--seed", str(seed),
                "--header", f"Authorization: Bearer {token}",
                "--generation-database", "none",
                "--request-timeout", "30",
                "--workers", "2",
                "--no-color",
                "--suppress-health-check", "all",
                "--phases", "examples,coverage,fuzzing,stateful",
            ]
            result = subprocess.run(command, cwd=ROOT, env=env, check=False)
            failed |= result.returncode != 0
    print(f"\nSchemathesis seed was {seed}; {'FAILURES' if failed else 'no failures'}.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
