"""Tenant isolation and scope declarations on every route, enumerated from Django's resolver.

Every route under /v1/ and every method it allows is found by walking
`get_resolver().url_patterns` (viewsets: their `actions`; APIViews: the handlers they define).
For each route x method:

- the view declares a known scope (`required_scope_for`), except PUBLIC_ROUTES;
- a token with every scope but that one gets 403 "Missing required scope: <scope>", and no
  token gets 401;
- the probes in tests/route_registry.py run: tenant A's object is built, tenant B (holding
  exactly the route's scope) sends the request and gets 404 `not_found` for A's object (or,
  for lists and aggregates, an answer without A's ids), A's rows in every tenant-owned table
  are unchanged, B's refusal is the one it gets for an id that exists nowhere, and A itself
  gets a real answer for the same request.

A route or method missing from the registry fails with a message saying where to register it,
so new routes cannot skip these checks. `pytest tests/test_route_isolation.py -s` prints the
coverage figure (test_coverage_figure).

Coverage when written: 34 routes under /v1/ and 42 route x method pairs (issue 7's
provider-key routes included: 2 routes, 3 pairs), 59 probes, 5 hub process source types,
HEAD on 23 GET routes. Public allow-list: healthz, readyz, v1/schema/, v1/docs/ (admin/ pages
are staff-session routes, scoped by the admin tests instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from agent33.auth.permissions import AUTHENTICATED, required_scope_for
from agent33.auth.scopes import ADMIN, ALL_SCOPES, OUTCOMES_READ
from agent33.tenancy.models import Tenant
from tests.conftest import make_client, scopes_without
from tests.route_registry import (
    OPERATOR_ROUTES,
    PROCESS_CASES,
    PUBLIC_ROUTES,
    REGISTRY,
    Built,
    Probe,
)

# --- enumerating the routes ---------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    key: str  # "v1/operations/traces/<id>": the pattern with parameter names only
    callback: Any
    methods: tuple[str, ...]

    @property
    def view_class(self):
        return getattr(self.callback, "cls", None) or getattr(self.callback, "view_class", None)

    @property
    def view_name(self) -> str:
        cls = self.view_class
        return cls.__name__ if cls else getattr(self.callback, "__name__", repr(self.callback))


def _group_end(text: str, start: int) -> int:
    """Index of the parenthesis closing the group opened at `start` (regex syntax)."""
    depth, i, in_class = 0, start, False
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced group in {text!r}")


def route_key(pattern_text: str) -> str:
    """'v1/operations/^traces/(?P<pk>[^/.]+)/steps$' → 'v1/operations/traces/<id>/steps';
    'tenants/<str:tenant_id>/policy' → 'tenants/<tenant_id>/policy'."""
    out, i = [], 0
    while i < len(pattern_text):
        if pattern_text.startswith("(?P<", i):
            name = pattern_text[i + 4 : pattern_text.index(">", i)]
            out.append(f"<{name}>")
            i = _group_end(pattern_text, i) + 1
        elif pattern_text[i] == "<":  # a path() converter
            end = pattern_text.index(">", i)
            out.append(f"<{pattern_text[i + 1 : end].split(':')[-1]}>")
            i = end + 1
        elif pattern_text[i] in "^$":
            i += 1
        elif pattern_text[i] == "\\":
            out.append(pattern_text[i + 1])
            i += 2
        else:
            out.append(pattern_text[i])
            i += 1
    return "".join(out).replace("<pk>", "<id>")


def _methods(callback) -> tuple[str, ...]:
    actions = getattr(callback, "actions", None)
    if actions:  # a DRF viewset route: {"get": "list", "post": "create"}
        return tuple(sorted(m.upper() for m in actions if m != "head"))
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if cls is None:  # a plain function view: any method reaches it
        return ("GET",)
    return tuple(
        sorted(m.upper() for m in cls.http_method_names
               if m not in ("head", "options") and hasattr(cls, m))
    )


def discover_routes(patterns=None, prefix: str = "") -> list[Route]:
    routes = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        text = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            routes.extend(discover_routes(pattern.url_patterns, text))
        elif isinstance(pattern, URLPattern):
            routes.append(Route(route_key(text), pattern.callback, _methods(pattern.callback)))
    return routes


ROUTES = [r for r in discover_routes() if not r.key.startswith("admin/")]
API_ROUTES = [r for r in ROUTES if r.key.startswith("v1/")
              and r.key not in PUBLIC_ROUTES and r.key not in OPERATOR_ROUTES]
PAIRS = [(route, method) for route in API_ROUTES for method in route.methods]
GET_ROUTES = [route for route in API_ROUTES if "GET" in route.methods]


def _pair_id(pair) -> str:
    route, method = pair
    return f"{method} {route.key}"


def _head_params():
    for route in GET_ROUTES:
        yield pytest.param(route, id=f"HEAD {route.key}")


def declared_scope(route: Route, method: str) -> str | None:
    """The scope the view declares for this method, read as the permission class reads it."""
    cls = getattr(route.callback, "cls", None)
    if cls is None:
        return None  # not a DRF view: nothing can declare or check a scope
    view = cls(**getattr(route.callback, "initkwargs", {}))
    actions = getattr(route.callback, "actions", None)
    if actions:
        view.action_map = actions
        view.action = actions.get(method.lower()) or (
            actions.get("get") if method == "HEAD" else None
        )
    request = Request(APIRequestFactory().generic(method, "/" + route.key))
    view.request, view.args, view.kwargs, view.format_kwarg = request, (), {}, None
    return required_scope_for(view, request)


def _unregistered(route: Route, method: str) -> str:
    return (
        f"{method} /{route.key} ({route.view_name}) is not covered by the isolation test: "
        f"add it to REGISTRY in tests/route_registry.py (how to build tenant A's object and "
        f"what to send), or to PUBLIC_ROUTES there if it is deliberately public."
    )


def probes_for(route: Route, method: str) -> list[Probe]:
    probes = REGISTRY.get(route.key, {}).get(method)
    if not probes:
        pytest.fail(_unregistered(route, method))
    return probes


# --- sending and comparing ----------------------------------------------------------------


def send(client, method: str, path: str, body: Any, query: dict | None, multipart: bool):
    if query:
        path = f"{path}?{urlencode(query)}"
    kwargs: dict[str, Any] = {}
    if body is not None:
        kwargs = {"data": body, "format": "multipart" if multipart else "json"}
    return getattr(client, method.lower())(path, **kwargs)


def content_of(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8", "replace")
    return response.content.decode("utf-8", "replace")


def tenant_rows(tenant) -> dict[str, list[dict]]:
    """Every row the tenant owns, in every table with a `tenant` foreign key."""
    state = {"tenancy.Tenant": list(Tenant._base_manager.filter(pk=tenant.pk).values())}
    for model in apps.get_models():
        try:
            field = model._meta.get_field("tenant")
        except FieldDoesNotExist:
            continue
        if field.many_to_one and field.related_model is Tenant:
            rows = model._base_manager.filter(tenant=tenant).order_by("pk").values()
            state[model._meta.label] = list(rows)
    return state


def _changed_tables(before: dict, after: dict) -> list[str]:
    return sorted(label for label in before if before[label] != after.get(label))


def _token_scopes(scope: str) -> list[str]:
    return [OUTCOMES_READ] if scope == AUTHENTICATED else [scope]


def _normalised(response, replacements: dict[str, str]) -> tuple[int, str]:
    text = content_of(response)
    for real in sorted(replacements, key=len, reverse=True):
        text = text.replace(real, replacements[real])
    return response.status_code, text


def run_probe(route: Route, method: str, probe: Probe, scope: str, *, tenant_a, tenant_b,
              api_client_for, on_commit) -> None:
    where = f"{method} /{route.key}" + (f" [{probe.note}]" if probe.note else "")
    built: Built = probe.build(tenant_a)
    path, body, query = probe.render(built, route.key)
    other = api_client_for(tenant_b, scopes=_token_scopes(scope))

    before = tenant_rows(tenant_a)
    # What B's request schedules after commit (tasks, outcome events) runs too: a leak there
    # would change A's rows as surely as one in the view.
    with on_commit(execute=True) as callbacks:
        response = send(other, method, path, body, query, probe.multipart)
    text = content_of(response)
    assert response.status_code == probe.status, (
        f"{where}: tenant B got {response.status_code} (expected {probe.status}) "
        f"{text[:300]!r}"
    )
    if probe.code is not None:
        assert response.json()["code"] == probe.code, f"{where}: {text[:300]!r}"
    # No shared cache or browser keeps any tenant's answer (DESIGN §7.2).
    assert response.get("Cache-Control") == "no-store", f"{where}: cacheable answer"
    changed = _changed_tables(before, tenant_rows(tenant_a))
    assert not changed, f"{where}: tenant B's request changed tenant A's rows in {changed}"

    if response.status_code >= 400:
        assert not callbacks, f"{where}: a refused request scheduled side effects {callbacks}"
        # B's refusal must not depend on whether A's object exists.
        named = built.named()
        placeholders = {real: f"<named-{i}>" for i, real in enumerate(named)}
        missing = built.missing()
        m_path, m_body, m_query = probe.render(missing, route.key)
        absent = send(other, method, m_path, m_body, m_query, probe.multipart)
        assert _normalised(response, placeholders) == _normalised(
            absent, {named[real]: placeholders[real] for real in named}
        ), f"{where}: B's answer for A's object differs from the one for a missing object"
    else:
        leaked = [secret for secret in built.secrets if secret in text]
        assert not leaked, f"{where}: tenant B's answer shows tenant A's {leaked}"
    if probe.check_b is not None:
        probe.check_b(response, built, tenant_b)

    if probe.own_status is not None:
        # The same request from the owner works: the probe aims at a real object.
        path, body, query = probe.render(built, route.key)
        own = send(api_client_for(tenant_a, scopes=_token_scopes(scope)), method, path, body,
                   query, probe.multipart)
        own_text = content_of(own)
        assert own.status_code == probe.own_status, (
            f"{where}: the owner got {own.status_code} (expected {probe.own_status}); the "
            f"probe does not reach a real object: {own_text[:300]!r}"
        )
        if probe.own_sees:
            unseen = [secret for secret in built.secrets if secret not in own_text]
            assert not unseen, f"{where}: the owner's own answer lacks {unseen}"
        if probe.check_own is not None:
            probe.check_own(own, built, tenant_a)


# --- the tests ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _provider_key_encryption(settings):
    """Stored provider keys are encrypted; tests run without DEBUG, so give them a key."""
    from cryptography.fernet import Fernet

    settings.AGENT33_SECRET_KEYS = [Fernet.generate_key().decode()]


def test_public_allow_list_is_exact():
    """Every route outside /v1/ (admin aside) is public or operator-only and listed as such;
    every listed one exists."""
    keys = {route.key for route in ROUTES}
    stale = sorted((set(PUBLIC_ROUTES) | set(OPERATOR_ROUTES)) - keys)
    assert not stale, f"PUBLIC_ROUTES/OPERATOR_ROUTES list routes that no longer exist: {stale}"
    unlisted = sorted(r.key for r in ROUTES if not r.key.startswith("v1/")
                      and r.key not in PUBLIC_ROUTES and r.key not in OPERATOR_ROUTES)
    assert not unlisted, (
        f"routes outside /v1/ that are in neither PUBLIC_ROUTES nor OPERATOR_ROUTES: {unlisted}"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("key", sorted(PUBLIC_ROUTES))
def test_public_routes_answer_without_a_token(key):
    assert make_client().get(f"/{key}").status_code == 200


OPERATOR_PAIRS = [(route, method) for route in ROUTES if route.key in OPERATOR_ROUTES
                  for method in route.methods]


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "method"), OPERATOR_PAIRS, ids=map(_pair_id, OPERATOR_PAIRS))
def test_operator_routes_refuse_anonymous_callers_and_every_tenant_token(
    route, method, tenant_a, api_client_for
):
    scope = declared_scope(route, method)
    assert scope in ALL_SCOPES, f"{method} /{route.key} declares {scope!r}"
    where = f"{method} /{route.key}"

    operator_route = OPERATOR_ROUTES[route.key]
    path, body = operator_route.path(route.key), operator_route.body

    anonymous = send(make_client(), method, path, body, None, False)
    assert anonymous.status_code == 401, where

    for scopes, code in (([ADMIN], "operator_token_required"),
                         (scopes_without(scope), "missing_scope")):
        tenant_token = api_client_for(tenant_a, scopes=scopes)
        refused = send(tenant_token, method, path, body, None, False)
        assert refused.status_code == 403, f"{where}: a tenant token with {scopes} got in"
        assert refused.json()["code"] == code, f"{where}: {refused.json()}"

    lacking = api_client_for(None, scopes=scopes_without(scope, operator=True))
    refused = send(lacking, method, path, body, None, False)
    assert refused.status_code == 403, where
    assert refused.json()["detail"] == f"Missing required scope: {scope}", where

    for scopes in ([scope], [ADMIN]):
        operator = api_client_for(None, scopes=scopes)
        assert send(operator, method, path, body, None, False).status_code == 200, where


def test_registry_has_no_stale_entries():
    methods = {route.key: set(route.methods) for route in API_ROUTES}
    for key, by_method in REGISTRY.items():
        assert key in methods, f"REGISTRY has {key!r}, which is no longer a /v1/ route"
        extra = set(by_method) - methods[key]
        assert not extra, f"REGISTRY has {sorted(extra)} for {key!r}, which does not allow them"


def test_every_hub_process_source_is_registered():
    from operations.hub import registered_sources

    registered = {source.type_name for source in registered_sources()}
    missing = sorted(registered - set(PROCESS_CASES))
    assert not missing, (
        f"hub process sources {missing} are not in PROCESS_CASES (tests/route_registry.py): "
        f"add how to make a controllable process of that type, so /v1/operations/processes/"
        f"{{id}} and .../control are isolation-tested for it"
    )
    stale = sorted(set(PROCESS_CASES) - registered)
    assert not stale, f"PROCESS_CASES has unregistered source types {stale}"


@pytest.mark.parametrize(("route", "method"), PAIRS, ids=map(_pair_id, PAIRS))
def test_scope_is_declared(route, method):
    if getattr(route.callback, "cls", None) is None:
        pytest.fail(f"/{route.key} ({route.view_name}) is not a DRF view: it cannot declare "
                    "required_scopes; make it an APIView or add it to PUBLIC_ROUTES")
    scope = declared_scope(route, method)
    assert scope is not None, (
        f"{method} /{route.key} ({route.view_name}) declares no scope: add it to the view's "
        f"required_scopes"
    )
    assert scope in (*ALL_SCOPES, AUTHENTICATED), f"{method} /{route.key}: unknown {scope!r}"


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "method"), PAIRS, ids=map(_pair_id, PAIRS))
def test_scope_is_enforced(route, method, tenant_a, api_client_for):
    scope = declared_scope(route, method)
    assert scope is not None, f"{method} /{route.key} declares no scope"
    probe = probes_for(route, method)[0]
    built = probe.build(tenant_a)
    path, body, query = probe.render(built, route.key)
    where = f"{method} /{route.key}"

    response = send(make_client(), method, path, body, query, probe.multipart)
    assert response.status_code == 401, f"{where}: anonymous got {response.status_code}"
    assert response.json()["code"] in ("not_authenticated", "authentication_failed"), where
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), where

    path, body, query = probe.render(built, route.key)  # a fresh body (uploads are read once)
    if scope == AUTHENTICATED:
        response = send(api_client_for(tenant_a, scopes=[OUTCOMES_READ]), method, path, body,
                        query, probe.multipart)
        assert response.status_code not in (401, 403), f"{where}: any token should do"
        return
    lacking = api_client_for(tenant_a, scopes=scopes_without(scope))
    response = send(lacking, method, path, body, query, probe.multipart)
    assert response.status_code == 403, f"{where}: missing scope got {response.status_code}"
    assert response.json()["detail"] == f"Missing required scope: {scope}", where
    assert response.json()["code"] == "missing_scope", where


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "method"), PAIRS, ids=map(_pair_id, PAIRS))
def test_other_tenant_is_isolated(route, method, tenant_a, tenant_b, api_client_for,
                                  django_capture_on_commit_callbacks):
    scope = declared_scope(route, method)
    assert scope is not None, f"{method} /{route.key} declares no scope"
    for probe in probes_for(route, method):
        run_probe(route, method, probe, scope, tenant_a=tenant_a, tenant_b=tenant_b,
                  api_client_for=api_client_for, on_commit=django_capture_on_commit_callbacks)


@pytest.mark.django_db
@pytest.mark.parametrize("route", list(_head_params()))
def test_head_follows_get(route, tenant_a, tenant_b, api_client_for):
    """HEAD (which Django answers with get()) has GET's scope and GET's isolation."""
    scope = declared_scope(route, "HEAD")
    assert scope == declared_scope(route, "GET"), f"HEAD /{route.key}: scope {scope!r}"
    probe = probes_for(route, "GET")[0]
    path, _, query = probe.render(probe.build(tenant_a), route.key)
    other = api_client_for(tenant_b, scopes=_token_scopes(scope))
    response = send(other, "HEAD", path, None, query, False)
    assert response.status_code == probe.status, f"HEAD /{route.key}: {response.status_code}"


def test_coverage_figure():
    """Every /v1/ route x method is registered; prints the figure for the closing note."""
    unregistered = [_unregistered(route, method) for route, method in PAIRS
                    if not REGISTRY.get(route.key, {}).get(method)]
    assert not unregistered, "\n".join(unregistered)
    probes = sum(len(REGISTRY[route.key][method]) for route, method in PAIRS)
    print(
        f"\nroute isolation coverage: {len(API_ROUTES)} routes under /v1/, {len(PAIRS)} "
        f"route x method pairs, {probes} probes, {len(PROCESS_CASES)} hub process source "
        f"types, HEAD on {len(GET_ROUTES)} GET routes; public: {', '.join(PUBLIC_ROUTES)}"
    )
    assert len(PAIRS) >= 40  # the figure when this test was written; it only grows
