"""The admin's Batches: a read-only list and page, each staff member's tenants only."""

from __future__ import annotations

import pytest

from operations.models import Batch

pytestmark = pytest.mark.django_db


def test_batch_admin_pages(client, staff_user_factory, tenant_a, tenant_b):
    mine = Batch.all_tenants.create(tenant=tenant_a, action="pause", created_by="token:x",
                                    items=["wfrun-1"])
    theirs = Batch.all_tenants.create(tenant=tenant_b, action="pause", created_by="token:y")
    client.force_login(staff_user_factory("adm", tenants=[tenant_a]))
    page = client.get("/admin/operations/batch/")
    assert page.status_code == 200
    assert mine.pk in page.content.decode() and theirs.pk not in page.content.decode()
    assert client.get(f"/admin/operations/batch/{mine.pk}/change/").status_code == 200
    assert client.get(f"/admin/operations/batch/{theirs.pk}/change/").status_code in (302, 404)
    assert client.get("/admin/operations/batch/add/").status_code == 403
