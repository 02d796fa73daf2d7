"""How the route isolation test (tests/test_route_isolation.py) reaches every /v1/ route.

`REGISTRY` maps each route, as the resolver spells it with the parameter names only
("v1/operations/traces/<id>", "v1/multimodal/tenants/<tenant_id>/policy"), and each HTTP
method it allows, to one or more `Probe`s: how to build tenant A's object(s) and what request
tenant B sends. The test fails for a route or method that is not here, so a new route cannot
skip the isolation and scope checks. The scope is never written here: the test reads it from
the view (`required_scopes`) and gives tenant B's token exactly that scope.

What the test asserts for each probe (besides the probe's own `check_b`):
- tenant B gets `status` (and `code`); every row tenant A owns, in every tenant-owned table,
  is the same before and after B's request;
- when B is refused (4xx), B gets exactly the answer it would get for an id that exists
  nowhere (no "exists, but not yours" oracle);
- when B is answered (2xx), none of A's ids or markers appear anywhere in the body;
- tenant A, sending the same request, gets `own_status` (the probe aims at a real object, so
  a 404 for B means something), and for lists/aggregates sees its own ids (`own_sees`).

To register a new route: add `"<route key>": {"GET": [Probe(...)], ...}` to REGISTRY
(object routes: `_object_probe`; lists: `_list_probes`; creates: `_create_probe`), or to
PUBLIC_ROUTES if it is deliberately unauthenticated. A new hub process source goes into
PROCESS_CASES.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from multimodal.models import Artifact, MultimodalPolicy, MultimodalRequest
from operations.models import AutonomyBudget, Batch, ImprovementIntake, Trace, WorkflowRun
from outcomes.models import OutcomeEvent
from tests.factories.multimodal import (
    ArtifactFactory,
    MultimodalRequestFactory,
    MultimodalResultFactory,
    wav_bytes,
)
from tests.factories.operations import (
    AutonomyBudgetFactory,
    ImprovementIntakeFactory,
    TraceFactory,
    TraceStepFactory,
    WorkflowRunFactory,
)
from tests.factories.outcomes import OutcomeEventFactory
from tests.factories.webhooks import WebhookAttemptFactory, WebhookEndpointFactory
from webhooks.models import WebhookEndpoint

__all__ = [
    "OPERATOR_ROUTES",
    "PROCESS_CASES",
    "PUBLIC_ROUTES",
    "REGISTRY",
    "Built",
    "OperatorRoute",
    "Probe",
    "missing_like",
]

# Routes anyone may call without a token; every other route must declare a scope. Keys are
# route keys as above (outside /v1/ too: the test enumerates every non-admin route).
PUBLIC_ROUTES: dict[str, str] = {
    "healthz": "liveness probe",
    "readyz": "readiness probe (database reachable)",
    "v1/schema/": "the OpenAPI schema",
    "v1/docs/": "Swagger UI for the schema",
}

@dataclass(frozen=True)
class OperatorRoute:
    """Why a route is operator-only, and the request an operator sends it (URL parameters,
    body), which must answer 200."""

    reason: str
    fixed: Mapping[str, str] = field(default_factory=dict)
    body: Any = None

    def path(self, key: str) -> str:
        for name, value in self.fixed.items():
            key = key.replace(f"<{name}>", value)
        return "/" + key


# Routes that read or change every tenant's data at once: only an all-tenants (operator)
# token with the route's scope gets in; anonymous callers get 401 and a tenant's token 403
# whatever its scopes, `admin` included (tests/test_route_isolation.py checks all three).
# Keys as above.
OPERATOR_ROUTES: dict[str, OperatorRoute] = {
    "metrics": OperatorRoute("Prometheus metrics of the whole service (metrics:read)"),
    # Issue 16: prices are the platform's, the same for every tenant (multimodal:admin).
    "v1/multimodal/prices/<provider>/<model>": OperatorRoute(
        "the platform's price table (multimodal:admin)",
        fixed={"provider": "openai", "model": "tts-1"},
        body={"usd_per_unit": {"characters": "0.000015"}},
    ),
}


def missing_like(value: str) -> str:
    """An id of the same shape as `value` (same length and prefix) that exists nowhere."""
    last = value[-1:]
    return value[:-1] + ("1" if last == "0" else "0")


@dataclass(frozen=True)
class Built:
    """What a probe built for tenant A."""

    kwargs: Mapping[str, str] = field(default_factory=dict)  # URL parameters naming A's ids
    fixed: Mapping[str, str] = field(default_factory=dict)  # other URL parameters ("openai")
    refs: Mapping[str, str] = field(default_factory=dict)  # other ids of A a body/query names
    secrets: tuple[str, ...] = ()  # A's ids/markers B must never see in an answer

    def missing(self) -> Built:
        """The same request shape naming ids that exist nowhere."""
        return replace(
            self,
            kwargs={k: missing_like(v) for k, v in self.kwargs.items()},
            refs={k: missing_like(v) for k, v in self.refs.items()},
        )

    def named(self) -> dict[str, str]:
        """A's ids the request names, with the same-shaped missing ids (for comparing)."""
        other = self.missing()
        return {
            **{v: other.kwargs[k] for k, v in self.kwargs.items()},
            **{v: other.refs[k] for k, v in self.refs.items()},
        }


Check = Callable[[Any, Built, Any], None]  # (response, built, tenant)


@dataclass(frozen=True)
class Probe:
    build: Callable[[Any], Built]  # tenant A → what was built
    body: Any = None  # a dict, or Built → dict
    query: Any = None  # a dict, or Built → dict
    multipart: bool = False
    status: int = 404  # what tenant B (holding the route's scope) must get
    code: str | None = "not_found"
    own_status: int | None = 200  # tenant A, same request; None: not checked
    own_sees: bool = False  # A's answer contains all of built.secrets
    check_b: Check | None = None
    check_own: Check | None = None
    note: str = ""

    def render(self, built: Built, key: str) -> tuple[str, Any, dict | None]:
        path = key
        for name, value in {**built.fixed, **built.kwargs}.items():
            path = path.replace(f"<{name}>", value)
        assert "<" not in path, f"{key}: the probe's build() gives no value for {path}"
        body = self.body(built) if callable(self.body) else self.body
        query = self.query(built) if callable(self.query) else self.query
        return "/" + path, body, query


# --- building blocks ----------------------------------------------------------------------


def _marker() -> str:
    return f"leakprobe{uuid.uuid4().hex[:12]}"


def _obj(factory, **fields) -> Callable[[Any], Built]:
    def build(tenant) -> Built:
        pk = factory(tenant=tenant, **fields).pk
        return Built(kwargs={"id": pk}, secrets=(pk,))

    return build


def _object_probe(factory, *, body=None, own_status: int = 200, **fields) -> Probe:
    return Probe(build=_obj(factory, **fields), body=body, own_status=own_status)


def _list_probes(factory, **fields) -> list[Probe]:
    """B's list never shows A's rows; nor when B asks for A's tenant by query parameter."""

    def build(tenant) -> Built:
        pk = factory(tenant=tenant, **fields).pk
        return Built(refs={"tenant": tenant.slug}, secrets=(pk, tenant.slug))

    return [
        Probe(build=build, status=200, code=None, own_sees=True),
        Probe(build=build, query=lambda b: {"tenant_id": b.refs["tenant"]}, status=200,
              code=None, own_sees=True, note="tenant_id query parameter"),
    ]


def _owned_by_requester(model) -> Check:
    def check(response, built, tenant) -> None:
        created = model.all_tenants.get(pk=response.json()["id"])
        assert created.tenant_id == tenant.slug, f"created for {created.tenant_id}"

    return check


def _create_probe(model, body: dict, *, multipart: bool = False) -> Probe:
    """B creates with A's tenant_id in the body: the row is B's, A's rows are untouched."""

    def build(tenant) -> Built:
        return Built(refs={"tenant": tenant.slug}, secrets=(tenant.slug,))

    def with_tenant(built: Built) -> dict:
        fresh = body() if callable(body) else dict(body)
        return {**fresh, "tenant_id": built.refs["tenant"]}

    owned = _owned_by_requester(model)
    return Probe(build=build, body=with_tenant, multipart=multipart, status=201, code=None,
                 own_status=201, check_b=owned, check_own=owned,
                 note="tenant_id in the body is ignored")


def _nothing_of_a(tenant) -> Built:
    return Built(refs={"tenant": tenant.slug}, secrets=(tenant.slug,))


# --- operations ---------------------------------------------------------------------------

OPS = "v1/operations"


@dataclass(frozen=True)
class ProcessCase:
    """A hub process source: how to make a controllable process of it for tenant A."""

    make: Callable[[Any], Any]  # tenant → model instance whose pk is the process id
    action: str  # the control that would succeed (or fail with 409) for its owner
    own_control_status: int = 200


# Every registered hub source (operations.hub.registered_sources()) must be here; the test
# fails for one that is not (or for an entry whose source is no longer registered).
PROCESS_CASES: dict[str, ProcessCase] = {
    "trace": ProcessCase(lambda t: TraceFactory(tenant=t, status="running"), "cancel"),
    "autonomy_budget": ProcessCase(
        lambda t: AutonomyBudgetFactory(tenant=t, status="active"), "pause"
    ),
    # Intakes support no controls (triage moves them): their owner gets 409, others 404.
    "improvement_intake": ProcessCase(
        lambda t: ImprovementIntakeFactory(tenant=t), "cancel", own_control_status=409
    ),
    "workflow": ProcessCase(lambda t: WorkflowRunFactory(tenant=t, status="running"), "pause"),
    "multimodal_request": ProcessCase(lambda t: MultimodalRequestFactory(tenant=t), "cancel"),
}


def _process_build(case: ProcessCase) -> Callable[[Any], Built]:
    def build(tenant) -> Built:
        pk = case.make(tenant).pk
        return Built(kwargs={"process_id": pk}, secrets=(pk,))

    return build


def _process_probes(control: bool) -> list[Probe]:
    probes = []
    for type_name, case in PROCESS_CASES.items():
        if control:
            probes.append(Probe(
                build=_process_build(case),
                body={"action": case.action, "reason": "isolation probe"},
                own_status=case.own_control_status, note=type_name,
            ))
        else:
            probes.append(Probe(build=_process_build(case), note=type_name))
    return probes


def _hub_build(tenant) -> Built:
    ids = (
        TraceFactory(tenant=tenant, status="running").pk,
        AutonomyBudgetFactory(tenant=tenant, status="active").pk,
        ImprovementIntakeFactory(tenant=tenant).pk,
        WorkflowRunFactory(tenant=tenant, status="running").pk,
        MultimodalRequestFactory(tenant=tenant).pk,
    )
    return Built(refs={"tenant": tenant.slug}, secrets=(*ids, tenant.slug))


def _hub_stream_build(tenant) -> Built:
    """A's processes, created and one moved: a catch-up from the event before the first of
    them (`duration=0`: the stream ends after the catch-up) replays them to A, never to B."""
    from django.db.models import Min

    from agent33.tenancy.context import tenant_scope
    from operations.models import ProcessEvent
    from operations.services import workflow_run_transition
    from operations.transitions import Origin

    built = _hub_build(tenant)
    run = WorkflowRunFactory(tenant=tenant, status="running")
    with tenant_scope(tenant):
        workflow_run_transition(run=run, status="paused", origin=Origin(
            actor="token:probe", path="api", scopes=frozenset({"admin"})))
    first = ProcessEvent.all_tenants.filter(tenant=tenant).aggregate(low=Min("seq"))["low"]
    return replace(built, refs={**built.refs, "after": str(first - 1)},
                   secrets=(*built.secrets, run.pk))


def _trace_with_step(tenant) -> Built:
    pk = TraceStepFactory(trace=TraceFactory(tenant=tenant, status="running")).trace_id
    return Built(kwargs={"id": pk}, secrets=(pk,))


def _batch(tenant) -> Batch:
    run = WorkflowRunFactory(tenant=tenant, status="running").pk
    return Batch.all_tenants.create(tenant=tenant, action="pause", items=[run], matched=1,
                                    created_by="token:probe", reason=_marker())


def _batch_object(tenant) -> Built:
    batch = _batch(tenant)
    return Built(kwargs={"batch_id": batch.pk}, secrets=(batch.pk, batch.reason))


def _batch_list(tenant) -> Built:
    batch = _batch(tenant)
    return Built(refs={"tenant": tenant.slug}, secrets=(batch.pk, batch.reason, tenant.slug))


def _a_runs(tenant) -> Built:
    """Tenant A's running workflows, which B's batch names by id. The batch echoes its
    filter (B's own input, ids included), so the ids are not secrets here: what B must not
    learn is whether they exist (`matched` is 0 either way) or move them."""
    ids = tuple(WorkflowRunFactory(tenant=tenant, status="running").pk for _ in range(2))
    return Built(refs={"tenant": tenant.slug, **{f"run{i}": pk for i, pk in enumerate(ids)}},
                 secrets=(tenant.slug,))


def _matched_none(response, built, tenant) -> None:
    assert response.json()["matched"] == 0, response.json()


def _batch_probes() -> dict[str, dict[str, list[Probe]]]:
    owned = _owned_by_requester(Batch)

    def body(dry_run: bool):
        def render(built: Built) -> dict:
            return {"action": "pause", "dry_run": dry_run, "tenant_id": built.refs["tenant"],
                    "filter": {"ids": [built.refs["run0"], built.refs["run1"]]}}
        return render

    return {
        f"{OPS}/batches": {
            "GET": [Probe(build=_batch_list, status=200, code=None, own_sees=True)],
            "POST": [
                # B's batch naming A's processes (and A's tenant) is B's, matches none of
                # A's, and changes none of A's rows.
                Probe(build=_a_runs, body=body(False), status=202, code=None,
                      own_status=202, check_b=lambda r, b, t: (owned(r, b, t),
                                                               _matched_none(r, b, t)),
                      note="ids of another tenant's processes"),
                Probe(build=_a_runs, body=body(True), status=200, code=None,
                      own_status=200, check_b=_matched_none, note="dry run"),
            ],
        },
        f"{OPS}/batches/<batch_id>": {"GET": [Probe(build=_batch_object)]},
        f"{OPS}/batches/<batch_id>/cancel": {"POST": [Probe(build=_batch_object)]},
    }


def _operations() -> dict[str, dict[str, list[Probe]]]:
    records = {
        "traces": (Trace, TraceFactory, {"task_id": "t"}, None),
        # Submitting is the runtime's own move (workflows:write); approving needs
        # budgets:approve and pausing workflows:execute (tests/operations/test_approvals.py,
        # test_transitions.py check those rights on every record type).
        "budgets": (AutonomyBudget, AutonomyBudgetFactory, {"task_id": "b"},
                    {"status": "pending_approval"}),
        "improvements": (ImprovementIntake, ImprovementIntakeFactory, {"title": "idea"},
                         {"status": "triaged"}),
        "workflow-runs": (WorkflowRun, WorkflowRunFactory, {"workflow_name": "w"},
                          {"status": "running"}),
    }
    routes: dict[str, dict[str, list[Probe]]] = {
        f"{OPS}/hub": {"GET": [
            Probe(build=_hub_build, status=200, code=None, own_sees=True),
        ]},
        # The live hub (DESIGN §8.4): the catch-up part of the stream, which then ends.
        f"{OPS}/hub/stream": {"GET": [
            Probe(build=_hub_stream_build, status=200, code=None, own_sees=True,
                  query=lambda b: {"last_event_id": b.refs["after"], "duration": "0"}),
        ]},
        **_batch_probes(),
        f"{OPS}/processes/<process_id>": {"GET": _process_probes(control=False)},
        f"{OPS}/processes/<process_id>/control": {"POST": _process_probes(control=True)},
        f"{OPS}/traces/<id>/steps": {"POST": [
            Probe(build=_trace_with_step, body={"step_id": "probe", "actions": [{"tool": "x"}]},
                  own_status=201),
        ]},
        f"{OPS}/traces/<id>/complete": {"POST": [
            Probe(build=_trace_with_step, body={"status": "completed"}),
        ]},
    }
    for path, (model, factory, create_body, transition_body) in records.items():
        routes[f"{OPS}/{path}"] = {
            "GET": _list_probes(factory),
            "POST": [_create_probe(model, create_body)],
        }
        routes[f"{OPS}/{path}/<id>"] = {"GET": [_object_probe(factory)]}
        if transition_body is not None:
            routes[f"{OPS}/{path}/<id>/transition"] = {
                "POST": [_object_probe(factory, body=transition_body)]
            }
    return routes


# --- multimodal ---------------------------------------------------------------------------

MM = "v1/multimodal"


def _upload() -> dict:
    return {"file": SimpleUploadedFile("speech.wav", wav_bytes(), content_type="audio/wav")}


def _tenant_route(tenant) -> Built:
    # A policy row exists, so a leak would show (or change) real data.
    MultimodalPolicy.all_tenants.update_or_create(tenant=tenant,
                                                  defaults={"max_text_chars": 1234})
    return Built(kwargs={"tenant_id": tenant.slug})


def _limited_tenant(tenant) -> Built:
    MultimodalPolicy.all_tenants.update_or_create(
        tenant=tenant, defaults={"daily_spend_limit_usd": Decimal("10")})
    return Built(kwargs={"tenant_id": tenant.slug})


def _limit_kept(response, built, tenant) -> None:
    """Issue 23: raising or removing a daily spend limit is an operator's (or staff's)."""
    assert response.json()["code"] == "spend_limit_operator_only"
    kept = MultimodalPolicy.all_tenants.get(tenant=tenant).daily_spend_limit_usd
    assert kept == Decimal("10"), kept


def _provider_key(tenant) -> Built:
    from agent33.tenancy.context import tenant_scope
    from multimodal.provider_keys import credential_set

    with tenant_scope(tenant):  # as the tenant admin's own API call runs
        credential_set(tenant=tenant, actor="test:isolation", provider="openai",
                       api_key="sk-probe-original-1234")
    return Built(kwargs={"tenant_id": tenant.slug}, fixed={"provider": "openai"})


def _request_with_result(tenant) -> Built:
    result = MultimodalResultFactory(tenant=tenant)
    return Built(kwargs={"id": result.request_id}, secrets=(result.request_id, result.pk))


def _pending_request(tenant) -> Built:
    pk = MultimodalRequestFactory(tenant=tenant).pk
    return Built(kwargs={"id": pk}, secrets=(pk,))


def _foreign_artifact(tenant) -> Built:
    pk = ArtifactFactory(tenant=tenant).pk
    return Built(refs={"artifact": pk})


def _stats_build(tenant) -> Built:
    marker = _marker()
    failed = MultimodalRequestFactory(tenant=tenant, state="failed", error_message=marker)
    MultimodalResultFactory(tenant=tenant)
    return Built(refs={"tenant": tenant.slug}, secrets=(failed.pk, marker))


def _spend_build(tenant) -> Built:
    from django.utils import timezone

    from multimodal.models import DailySpend

    _tenant_route(tenant)
    DailySpend.all_tenants.create(tenant=tenant, day=timezone.now().date(),
                                  settled_nano_usd=1_234_567)
    return Built(kwargs={"tenant_id": tenant.slug})


def _empty_answer(response, built, tenant) -> None:
    assert response.json() == [], "another tenant's requests are counted"


def _multimodal() -> dict[str, dict[str, list[Probe]]]:
    create_body = {"modality": "text_to_speech", "input_text": "hi", "execute_now": False}
    return {
        f"{MM}/tenants/<tenant_id>/policy": {
            "GET": [Probe(build=_tenant_route)],
            "POST": [
                Probe(build=_tenant_route, body={"max_text_chars": 10}),
                Probe(build=_limited_tenant, body={"daily_spend_limit_usd": "5.00"},
                      note="a tenant's token lowers its own spend limit"),
                Probe(build=_limited_tenant, body={"daily_spend_limit_usd": "50.00"},
                      own_status=403, check_own=_limit_kept,
                      note="raising its own spend limit is an operator's"),
                Probe(build=_limited_tenant, body={"daily_spend_limit_usd": None},
                      own_status=403, check_own=_limit_kept,
                      note="removing its own spend limit is an operator's"),
            ],
        },
        # Issue 7: tenants' stored provider keys (multimodal:admin).
        f"{MM}/tenants/<tenant_id>/providers": {"GET": [Probe(build=_provider_key)]},
        f"{MM}/tenants/<tenant_id>/providers/<provider>": {
            "PUT": [Probe(build=_provider_key, body={"api_key": "sk-probe-replaced-9876"})],
            "DELETE": [Probe(build=_provider_key, own_status=204)],
        },
        # Issue 16: a tenant's spend today; the platform's price table (readable by all).
        f"{MM}/tenants/<tenant_id>/spend": {"GET": [Probe(build=_spend_build)]},
        f"{MM}/prices": {"GET": [
            Probe(build=_nothing_of_a, status=200, code=None, note="platform-wide, no tenant data"),
        ]},
        f"{MM}/stats": {"GET": [
            Probe(build=_stats_build, status=200, code=None, own_sees=True,
                  check_b=_empty_answer),
        ]},
        f"{MM}/artifacts": {"POST": [_create_probe(Artifact, _upload, multipart=True)]},
        f"{MM}/artifacts/<id>": {"GET": [_object_probe(ArtifactFactory)]},
        f"{MM}/artifacts/<id>/content": {"GET": [_object_probe(ArtifactFactory)]},
        f"{MM}/requests": {
            "GET": _list_probes(MultimodalRequestFactory),
            "POST": [
                _create_probe(MultimodalRequest, create_body),
                Probe(
                    build=_foreign_artifact,
                    body=lambda b: {"modality": "speech_to_text", "execute_now": False,
                                    "input_artifact_id": b.refs["artifact"]},
                    status=400, code="unknown_artifact", own_status=201,
                    note="another tenant's artifact as input",
                ),
            ],
        },
        f"{MM}/requests/<id>": {"GET": [Probe(build=_request_with_result)]},
        f"{MM}/requests/<id>/result": {"GET": [Probe(build=_request_with_result)]},
        f"{MM}/requests/<id>/cancel": {"POST": [
            Probe(build=_pending_request, body={"reason": "isolation probe"}),
        ]},
        f"{MM}/requests/<id>/execute": {"POST": [Probe(build=_pending_request)]},
    }


# --- outcomes -----------------------------------------------------------------------------

OUT = "v1/outcomes"


def _events_build(tenant) -> Built:
    marker = _marker()
    ids = tuple(
        OutcomeEventFactory(tenant=tenant, domain=marker, value=0.5).pk for _ in range(3)
    )
    return Built(refs={"tenant": tenant.slug, "domain": marker}, secrets=(*ids, marker))


def _trend_sample(expected: int) -> Check:
    def check(response, built, tenant) -> None:
        assert response.json()["sample_size"] == expected, response.json()

    return check


def _series_build(tenant) -> Built:
    # The series echoes the requested domain too: the counts tell whether A's events count.
    built = _events_build(tenant)
    return replace(built, secrets=tuple(s for s in built.secrets if s != built.refs["domain"]))


def _series_count(expected: int) -> Check:
    def check(response, built, tenant) -> None:
        assert response.json()["summary"]["count"] == expected, response.json()

    return check


def _trend_build(tenant) -> Built:
    # The trend echoes the requested domain, so only the event ids are secret there (and a
    # trend shows no ids: the sample sizes tell whether A's events were read).
    built = _events_build(tenant)
    secrets = tuple(s for s in built.secrets if s != built.refs["domain"])
    return replace(built, fixed={"metric_type": "success_rate"}, secrets=secrets)


def _outcomes() -> dict[str, dict[str, list[Probe]]]:
    event_body = {"domain": "d", "event_type": "e", "metric_type": "success_rate",
                  "value": 0.5}

    def a_by_tenant_id(built: Built) -> dict:
        return {"tenant_id": built.refs["tenant"], "domain": built.refs["domain"]}

    return {
        f"{OUT}/trends/<metric_type>": {"GET": [
            Probe(build=_trend_build, query=lambda b: {"domain": b.refs["domain"]},
                  status=200, code=None, check_b=_trend_sample(0), check_own=_trend_sample(3)),
            Probe(build=_trend_build, query=a_by_tenant_id, check_own=_trend_sample(3),
                  note="tenant_id query parameter"),
        ]},
        f"{OUT}/series": {"GET": [
            Probe(build=_series_build,
                  query=lambda b: {"metric_type": "success_rate", "domain": b.refs["domain"]},
                  status=200, code=None, check_b=_series_count(0), check_own=_series_count(3)),
            Probe(build=_series_build,
                  query=lambda b: {**a_by_tenant_id(b), "metric_type": "success_rate"},
                  check_own=_series_count(3), note="tenant_id query parameter"),
        ]},
        f"{OUT}/dashboard": {"GET": [
            Probe(build=_events_build, status=200, code=None, own_sees=True),
            Probe(build=_events_build, query=a_by_tenant_id, own_sees=True,
                  note="tenant_id query parameter"),
        ]},
        f"{OUT}/events": {
            "GET": _list_probes(OutcomeEventFactory),
            "POST": [_create_probe(OutcomeEvent, event_body)],
        },
        f"{OUT}/events/bulk": {"POST": [
            Probe(build=_nothing_of_a,
                  body=lambda b: {"events": [{**event_body, "tenant_id": b.refs["tenant"]}],
                                  "tenant_id": b.refs["tenant"]},
                  status=201, code=None, own_status=201,
                  check_b=lambda r, b, t: _only_own_events(t),
                  note="tenant_id in the body is ignored"),
        ]},
        f"{OUT}/events/<id>": {"GET": [_object_probe(OutcomeEventFactory)]},
        # Issue 18: a CTRF report's tests become the token tenant's events (two per test).
        f"{OUT}/ctrf": {"POST": [
            Probe(build=_nothing_of_a,
                  body=lambda b: {**_ctrf_report(), "tenant_id": b.refs["tenant"]},
                  status=201, code=None, own_status=201,
                  check_b=lambda r, b, t: _only_own_events(t, count=2),
                  note="tenant_id in the body is ignored"),
        ]},
    }


def _ctrf_report() -> dict:
    return {"results": {
        "tool": {"name": "probe"},
        "summary": {"tests": 1, "passed": 1, "failed": 0, "skipped": 0, "pending": 0,
                    "other": 0, "start": 1_767_225_600_000, "stop": 1_767_225_601_000},
        "tests": [{"name": "probe", "status": "passed", "duration": 5}],
    }}


def _only_own_events(tenant, count: int = 1) -> None:
    assert OutcomeEvent.all_tenants.filter(tenant=tenant).count() == count


# --- the whole API ------------------------------------------------------------------------


def _whoami_is_own(response, built, tenant) -> None:
    assert response.json()["tenant_id"] == tenant.slug


# --- webhooks -----------------------------------------------------------------------------

HOOKS = "v1/webhooks"


def _delivery_with_attempt(tenant) -> Built:
    attempt = WebhookAttemptFactory(tenant=tenant, error="leakprobe-attempt")
    return Built(kwargs={"id": attempt.delivery_id},
                 secrets=(attempt.delivery_id, attempt.delivery.endpoint_id))


def _endpoint_with_log(tenant) -> Built:
    attempt = WebhookAttemptFactory(tenant=tenant, error="leakprobe-attempt")
    endpoint_id = attempt.delivery.endpoint_id
    return Built(kwargs={"id": endpoint_id},
                 secrets=(endpoint_id, attempt.delivery_id, "leakprobe-attempt"))


def _webhooks() -> dict[str, dict[str, list[Probe]]]:
    return {
        f"{HOOKS}/endpoints": {
            "GET": _list_probes(WebhookEndpointFactory),
            "POST": [_create_probe(WebhookEndpoint, {"url": "http://127.0.0.1:9/hook",
                                                     "event_types": ["intake.opened"]})],
        },
        f"{HOOKS}/endpoints/<id>": {
            "GET": [_object_probe(WebhookEndpointFactory)],
            "PATCH": [_object_probe(WebhookEndpointFactory, body={"description": "probe"})],
            "DELETE": [_object_probe(WebhookEndpointFactory, own_status=204)],
        },
        f"{HOOKS}/endpoints/<id>/rotate-secret": {
            "POST": [_object_probe(WebhookEndpointFactory)],
        },
        f"{HOOKS}/endpoints/<id>/deliveries": {
            "GET": [Probe(build=_endpoint_with_log)],
        },
        f"{HOOKS}/deliveries/<id>/replay": {
            "POST": [Probe(build=_delivery_with_attempt, own_status=202)],
        },
    }


REGISTRY: dict[str, dict[str, list[Probe]]] = {
    "v1/auth/whoami": {"GET": [
        Probe(build=_nothing_of_a, status=200, code=None, check_b=_whoami_is_own,
              check_own=_whoami_is_own),
    ]},
    **_operations(),
    **_multimodal(),
    **_outcomes(),
    **_webhooks(),
}
