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
A "missing test data" warning (an operation that mostly answered 404) is shown, not failed:
which operation meets it depends on the run (earlier phases use up the seeded objects;
CI's runs flagged improvements' and workflow runs' transitions once each, the same seed
passed again), and a check that fails by chance is a defect.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import bench_env, gunicorn, job_worker, manage  # noqa: E402

# Seeds both fuzz tenants with each app's demo records and prints every object's (tenant,
# id), so the fuzzer reaches real objects (its own and the other tenant's), not only 404s.
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
        ids += list(model.all_tenants.values_list("tenant_id", "pk")[:200])
print(json.dumps(ids))
"""

# Object routes and the id prefix of the objects behind them: each route's `{id}` is drawn
# (half the time) from real ids of its own type, so the fuzzer reaches objects in every
# state rather than mostly other types' ids (a 404).
ID_PREFIX_BY_ROUTE = {
    "^/v1/operations/traces/": "trace-",
    "^/v1/operations/budgets/": "budget-",
    "^/v1/operations/improvements/": "intake-",
    "^/v1/operations/workflow-runs/": "wfrun-",
    "^/v1/multimodal/requests/": "mmreq-",
    "^/v1/multimodal/artifacts/": "artifact-",
    "^/v1/outcomes/events/": "outcome-",
    "^/v1/webhooks/endpoints/": "whep-",
    "^/v1/webhooks/deliveries/": "whdel-",
    "^/v1/operations/batches/": "batch-",
}
# Routes whose object parameter is not `{id}` (an operation's own parameters replace the
# global ones, so it is named here).
PATH_PARAMETER_BY_ROUTE = {"^/v1/operations/batches/": "batch_id"}
# Operations on objects the run itself uses up: the seeded batches finish in moments, and
# the fuzzer's DELETEs of the seeded endpoints take their deliveries with them, so most of
# their calls meet a 404 however their ids are drawn. They are fuzzed in a run of their own
# where only that warning does not fail (server errors and the contract checks still do).
FEW_OBJECT_OPERATIONS = (
    "POST /v1/webhooks/deliveries/{id}/replay",
    "POST /v1/operations/batches/{batch_id}/cancel",
)
PROCESS_PREFIXES = ("trace-", "budget-", "intake-", "wfrun-", "mmreq-")
# Stored so that DELETE …/providers/{provider} has a key to remove from the start.
SEEDED_PROVIDERS = ("openai", "elevenlabs")
# Fresh objects in their first states before each token's run, so every action route has
# something it may act on (the previous run used up what it found). A multimodal request
# run at once fails against the stub: a failed request can always be executed again.
SEEDED_OBJECTS = (
    ("/v1/operations/traces", {"task_id": "fuzz"}),
    ("/v1/operations/budgets", {"task_id": "fuzz"}),
    ("/v1/operations/improvements", {"title": "fuzz"}),
    ("/v1/operations/workflow-runs", {"workflow_name": "fuzz"}),
    # A receiver that is never there: deliveries fail on the worker, never in a request.
    ("/v1/webhooks/endpoints", {"url": "http://127.0.0.1:9/hook",
                                "event_types": ["intake.opened", "budget.pending_approval"]}),
    ("/v1/multimodal/requests",
     {"modality": "text_to_speech", "input_text": "fuzz", "execute_now": False}),
    ("/v1/multimodal/requests", {"modality": "text_to_speech", "input_text": "fuzz"}),
)

# Two batches per tenant and run (at most 3 may be queued or running at once; the worker
# finishes them in moments), so the batch routes have real ones to read and cancel.
SEEDED_BATCHES = 2
BATCH_BODY = {"action": "pause", "filter": {"include": "workflows"}, "reason": "fuzz"}

PHASES = "examples,coverage,fuzzing,stateful"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


class _RefusingProvider(BaseHTTPRequestHandler):
    """Stands in for every cloud provider: a 400 at once (no retries), so requests routed to
    a provider by a key the fuzzer or the seeding stored fail fast, here."""

    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b'{"error": {"message": "fuzzing: no cloud provider here"}}'
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _refuse

    def log_message(self, *args) -> None:
        pass


@contextmanager
def local_provider_stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def seed_live_objects(url: str, tokens: dict[str, str]) -> list[tuple[str, str]]:
    """Before each token's run, through the API: the default policy back (the previous run
    fuzzed it), provider keys to delete, and SEEDED_OBJECTS, five of each. Returns the new
    objects' (tenant, id)."""
    created = []
    for slug in ("fuzz-a", "fuzz-b"):
        with httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {tokens[slug]}"}) as client:
            answers = [client.post(f"/v1/multimodal/tenants/{slug}/policy", json={
                "max_text_chars": 5000, "max_artifact_bytes": 5_000_000,
                "max_timeout_seconds": 300,
                "allowed_modalities": ["speech_to_text", "text_to_speech", "vision_analysis"],
            })]
            answers += [
                client.put(f"/v1/multimodal/tenants/{slug}/providers/{provider}",
                           json={"api_key": f"sk-fuzz-{provider}-0000"})
                for provider in SEEDED_PROVIDERS
            ]
            answers += [
                client.post(path, json=body) for path, body in SEEDED_OBJECTS for _ in range(5)
            ]
            answers += [client.post("/v1/operations/batches", json=BATCH_BODY)
                        for _ in range(SEEDED_BATCHES)]
            moves, deliveries = seed_webhook_deliveries(client, answers)
            answers += moves
            created += deliveries
        for answer in answers:
            if answer.status_code >= 300:
                print(f"Could not seed {answer.request.url.path}: {answer.text[:200]}")
            elif "id" in answer.json():
                created.append((answer.json()["tenant_id"], answer.json()["id"]))
    return created


def seed_webhook_deliveries(
        client: httpx.Client, answers: list[httpx.Response],
) -> tuple[list[httpx.Response], list[tuple[str, str]]]:
    """A budget of each new pair submitted for approval: the seeded endpoints are sent
    `budget.pending_approval`, so the delivery routes (replay) meet real deliveries.
    Returns the submissions' answers and the deliveries' (tenant, id)."""
    made = [a.json() for a in answers if a.status_code < 300 and "id" in a.json()]
    budgets = [m["id"] for m in made if m["id"].startswith("budget-")][:2]
    endpoints = [m["id"] for m in made if m["id"].startswith("whep-")]
    moves = [client.post(f"/v1/operations/budgets/{pk}/transition",
                         json={"status": "pending_approval", "reason": "fuzz"})
             for pk in budgets]
    deliveries = []
    for pk in endpoints:
        listed = client.get(f"/v1/webhooks/endpoints/{pk}/deliveries")
        if listed.status_code != 200:
            print(f"Could not list the deliveries of {pk}: {listed.text[:200]}")
            continue
        body = listed.json()
        deliveries += [(d["tenant_id"], d["id"])
                       for d in (body if isinstance(body, list) else body.get("results", []))]
    return moves, deliveries


def main() -> int:
    with local_provider_stub() as provider_url:
        return fuzz(provider_url)


def fuzz(provider_url: str) -> int:
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
        # Keys stored without a base URL (the seeding's, the fuzzer's) use the platform's:
        # the local stub, so no request ever leaves the machine for a real provider.
        OPENAI_BASE_URL=provider_url,
        ELEVENLABS_BASE_URL=provider_url,
        OPENAI_COMPATIBLE_BASE_URL=provider_url,
        AGENT33_PROVIDER_PRIVATE_NETWORKS="127.0.0.0/8",
        # The live hub stream (GET /v1/operations/hub/stream) ends after at most 1 s here
        # (a longer `duration` is a 400), so no fuzzed request waits on an endless stream;
        # at most 3 of the server's 4 threads may hold one (the fuzzer sends 2 at a time).
        AGENT33_HUB_STREAM_MAX_SECONDS="1",
        AGENT33_HUB_STREAMS_THREADED="3",
    )
    env.pop("CELERY_BROKER_URL", None)  # the embedded mode: the database queue and a worker
    manage(env, "migrate", "--noinput")
    tokens = {}
    for slug in ("fuzz-a", "fuzz-b"):
        manage(env, "create_tenant", slug)
        out = manage(env, "issue_token", "--tenant", slug, "--scopes", "admin")
        tokens[slug] = out.strip().splitlines()[-1]
    out = manage(env, "issue_token", "--all-tenants", "--scopes", "admin", "--name", "operator")
    tokens["operator"] = out.strip().splitlines()[-1]
    objects = [
        tuple(pair)
        for pair in json.loads(manage(env, "shell", "-c", SEED_AND_LIST_IDS).splitlines()[-1])
    ]

    def dictionary(name: str, values: list[str]) -> str:
        return f"[dictionaries.{name}]\nvalues = {json.dumps(values)}\n"

    def config_for(who: str, objects: list[tuple[str, str]]) -> Path:
        """Half the time an `{id}` is a real one: on routes of one object type, an object of
        that type the token may act on (its tenant's; an operator's: any), so actions meet
        objects in states that allow them; elsewhere any object of either tenant. The tenant
        in `/tenants/{tenant_id}/...` is the token's own (operators: fuzz-a), so those routes
        reach a policy and provider keys in every phase (other tenants' 404s are the
        isolation tests' business, tests/test_route_isolation.py)."""
        ids = [pk for _, pk in objects]
        own = [pk for tenant, pk in objects if who == "operator" or tenant == who]
        # A type with no object yet (Schemathesis refuses an empty dictionary) keeps the
        # global `ids` dictionary.
        of_type = {prefix: [i for i in own if i.startswith(prefix)]
                   for prefix in ID_PREFIX_BY_ROUTE.values()}
        by_type = "".join(
            "[[operations]]\n"
            f'include-path-regex = "{route}"\n'
            f'parameters = {{ "path.{PATH_PARAMETER_BY_ROUTE.get(route, "id")}" = '
            f'{{ dictionary = "{prefix[:-1]}", '
            "probability = 0.5 } }\n"
            for route, prefix in ID_PREFIX_BY_ROUTE.items() if of_type[prefix]
        )
        config = workdir / f"schemathesis-{who}.toml"
        config.write_text(
            dictionary("ids", ids)
            + dictionary("processes", [i for i in own if i.startswith(PROCESS_PREFIXES)])
            + "".join(dictionary(prefix[:-1], values)
                      for prefix, values in of_type.items() if values)
            + "[parameters]\n"
            '"path.id" = { dictionary = "ids", probability = 0.5 }\n'
            '"path.process_id" = { dictionary = "processes", probability = 0.5 }\n'
            f'"path.tenant_id" = "{who if who.startswith("fuzz-") else "fuzz-a"}"\n'
            + by_type
        )
        return config

    print(f"Fuzzing with {len(objects)} real objects of both tenants.", flush=True)

    print(f"Schemathesis seed: {seed}  (replay with FUZZ_SEED={seed} make fuzz)", flush=True)
    failed = False
    # gunicorn's own 414 for request lines over 4 KB is an HTML page outside the API's
    # contract (a proxy in front sets its own limit), so the fuzzed server lifts it.
    # The embedded mode's worker runs the multimodal requests the fuzzer creates, so a create
    # waiting for its result (`?wait=` up to 60) ends when the job does.
    with gunicorn(env, workers=1, threads=4, extra_args=("--limit-request-line", "0")) as url, \
            job_worker(env, concurrency=2):
        for who, token in tokens.items():
            print(f"\n=== fuzzing as {who}", flush=True)
            config = config_for(who, objects + seed_live_objects(url, tokens))
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
                "--phases", PHASES,
            ]
            excluded = [arg for name in FEW_OBJECT_OPERATIONS for arg in ("--exclude-name", name)]
            result = subprocess.run(command + excluded, cwd=ROOT, env=env, check=False)
            failed |= result.returncode != 0
            print(f"\n=== fuzzing as {who}: {', '.join(FEW_OBJECT_OPERATIONS)}", flush=True)
            included = [arg for name in FEW_OBJECT_OPERATIONS for arg in ("--include-name", name)]
            # Without the stateful phase: its links start at operations left out here.
            alone = [arg if arg != PHASES else "examples,coverage,fuzzing" for arg in command]
            result = subprocess.run(alone + included + ["--warnings", "off"], cwd=ROOT,
                                    env=env, check=False)
            failed |= result.returncode != 0
    print(f"\nSchemathesis seed was {seed}; {'FAILURES' if failed else 'no failures'}.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
