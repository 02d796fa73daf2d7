"""The shared tenancy/auth matrix every resource goes through (STYLE.md "Tests").

For each endpoint: anonymous → 401, a token lacking the scope → 403 naming it, and — for
object routes — another tenant's token → 404 with the object unchanged. Lists show only own
rows; a `tenant_id` in a create body is ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import make_client, scopes_without


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # "{id}" marks an object route
    scope: str
    body: Any = None
    multipart: bool = False

    @property
    def is_object_route(self) -> bool:
        return "{id}" in self.path

    def url(self, object_id: str | None) -> str:
        return self.path.replace("{id}", object_id or "does-not-exist")


@dataclass
class Resource:
    endpoints: list[Endpoint]
    make_object: Callable[[Any], str]  # tenant → id of a fresh object of that tenant
    snapshot: Callable[[str], Any] | None = None  # id → state that must not change
    list_path: str | None = None
    list_scope: str | None = None
    create_path: str | None = None
    create_scope: str | None = None
    create_body: dict | None = None
    create_multipart: bool = False
    owner_of: Callable[[str], str] | None = None  # created id → its tenant slug
    extra: dict = field(default_factory=dict)


def _send(client, endpoint: Endpoint, url: str):
    kwargs: dict[str, Any] = {}
    if endpoint.body is not None:
        body = endpoint.body() if callable(endpoint.body) else endpoint.body
        if endpoint.multipart:
            kwargs.update(data=body, format="multipart")
        else:
            kwargs.update(data=body, format="json")
    return getattr(client, endpoint.method.lower())(url, **kwargs)


def run_api_matrix(resource: Resource, *, api_client_for, tenant_a, tenant_b) -> None:
    object_a = resource.make_object(tenant_a)
    anonymous = make_client()
    for endpoint in resource.endpoints:
        url = endpoint.url(object_a)
        where = f"{endpoint.method} {endpoint.path}"

        response = _send(anonymous, endpoint, url)
        assert response.status_code == 401, f"{where}: anonymous got {response.status_code}"
        assert response.json()["code"] in ("not_authenticated", "authentication_failed"), where
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), where

        lacking = api_client_for(tenant_a, scopes=scopes_without(endpoint.scope))
        response = _send(lacking, endpoint, url)
        assert response.status_code == 403, f"{where}: missing scope got {response.status_code}"
        assert response.json()["detail"] == f"Missing required scope: {endpoint.scope}", where

        if endpoint.is_object_route:
            before = resource.snapshot(object_a) if resource.snapshot else None
            other = api_client_for(tenant_b, scopes=[endpoint.scope])
            response = _send(other, endpoint, url)
            assert response.status_code == 404, (
                f"{where}: other tenant got {response.status_code} {response.content[:200]!r}"
            )
            assert response.json()["code"] == "not_found", where
            if resource.snapshot:
                assert resource.snapshot(object_a) == before, f"{where}: object changed"

    if resource.list_path:
        object_b = resource.make_object(tenant_b)
        client = api_client_for(tenant_a, scopes=[resource.list_scope])
        response = client.get(resource.list_path)
        assert response.status_code == 200, response.content
        ids = {row["id"] for row in response.json()}
        assert object_a in ids, "own object missing from the list"
        assert object_b not in ids, "another tenant's object is listed"
        assert all(row.get("tenant_id", tenant_a.slug) == tenant_a.slug for row in response.json())

    if resource.create_path:
        client = api_client_for(tenant_a, scopes=[resource.create_scope])
        body = dict(resource.create_body or {}, tenant_id=tenant_b.slug)
        response = client.post(
            resource.create_path, body, format="multipart" if resource.create_multipart else "json"
        )
        assert response.status_code == 201, response.content
        created = response.json()
        if "tenant_id" in created:
            assert created["tenant_id"] == tenant_a.slug
        if resource.owner_of:
            assert resource.owner_of(created["id"]) == tenant_a.slug
