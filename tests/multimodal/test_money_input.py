"""Money fields take plain ASCII decimals only, and only an operator (or staff) sets or
raises a tenant's daily spend limit (issue 23; DESIGN §8.2)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agent33.auth.scopes import MULTIMODAL_ADMIN, MULTIMODAL_READ
from multimodal.models import MultimodalPolicy, ProviderPrice
from tests.conftest import STAFF_PASSWORD

pytestmark = pytest.mark.django_db

# Each of these Python's Decimal() reads as a number (or NaN); none is a plain decimal.
NOT_PLAIN = [
    "١٢",  # Arabic-Indic digits: Decimal reads 12
    "\uff11\uff12",  # fullwidth digits
    "१२",  # Devanagari digits
    "1_000",  # an underscore separator: Decimal reads 1000
    "1,000",
    "-0",
    "+1",
    " 1",
    "1 ",
    "1\n",
    "1e3",
    "1E-3",
    "NaN",
    "Infinity",
    ".5",
    "5.",
    "",
    "0x10",
    "1" * 41,  # too long to be an amount
]


def policy_url(tenant) -> str:
    return f"/v1/multimodal/tenants/{tenant.slug}/policy"


def limit_of(tenant) -> Decimal | None:
    policy = MultimodalPolicy.all_tenants.filter(tenant=tenant).first()
    return policy.daily_spend_limit_usd if policy else None


@pytest.mark.parametrize("amount", NOT_PLAIN)
def test_a_limit_that_is_not_a_plain_decimal_is_a_400_naming_the_field(operator_client,
                                                                        tenant_a, amount):
    response = operator_client.post(policy_url(tenant_a), {"daily_spend_limit_usd": amount},
                                    format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["errors"]) == ["daily_spend_limit_usd"]
    assert body["detail"].startswith("daily_spend_limit_usd: ")
    assert limit_of(tenant_a) is None


@pytest.mark.parametrize("amount", NOT_PLAIN)
def test_a_price_that_is_not_a_plain_decimal_is_a_400_naming_the_unit(operator_client,
                                                                       amount):
    response = operator_client.put("/v1/multimodal/prices/openai/tts-1",
                                   {"usd_per_unit": {"characters": amount}}, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["usd_per_unit.characters"]
    assert not ProviderPrice.objects.filter(provider="openai", model="tts-1").exists()


@pytest.mark.parametrize(("amount", "shown"), [
    ("25", "25.00"), ("25.5", "25.50"), ("0.000001", "0.000001"), ("007.10", "7.10"),
    (12, "12.00"), ("0", "0.00"), ("1000000", "1000000.00"),
])
def test_plain_decimals_and_json_integers_are_accepted(operator_client, tenant_a, amount, shown):
    response = operator_client.post(policy_url(tenant_a), {"daily_spend_limit_usd": amount},
                                    format="json")
    assert response.status_code == 200, response.content
    assert response.json()["daily_spend_limit_usd"] == shown


def test_the_admin_refuses_a_limit_that_is_not_a_plain_decimal(staff_user_factory, client,
                                                                tenant_a):
    staff_user_factory("root", superuser=True)
    client.login(username="root", password=STAFF_PASSWORD)
    form = {"tenant": tenant_a.pk, "max_text_chars": 120, "max_artifact_bytes": 1000,
            "max_timeout_seconds": 30, "allowed_modalities": ["text_to_speech"],
            "max_storage_bytes": 1 << 30}
    url = "/admin/multimodal/multimodalpolicy/add/"
    for amount in ("١٢", "1_000", "1e3", "-0", "NaN"):
        response = client.post(url, {**form, "daily_spend_limit_usd": amount})
        assert response.status_code == 200, amount  # the form again, with the error
        assert "must be a plain decimal" in response.content.decode(), amount
        assert limit_of(tenant_a) is None
    response = client.post(url, {**form, "daily_spend_limit_usd": " 25.5 "})  # a form field
    assert response.status_code == 302
    assert limit_of(tenant_a) == Decimal("25.5")
    # Staff may raise and remove it.
    policy = MultimodalPolicy.all_tenants.get(tenant=tenant_a)
    change = f"/admin/multimodal/multimodalpolicy/{policy.pk}/change/"
    assert client.post(change, {**form, "daily_spend_limit_usd": "99"}).status_code == 302
    assert limit_of(tenant_a) == Decimal("99")
    assert client.post(change, {**form, "daily_spend_limit_usd": ""}).status_code == 302
    assert limit_of(tenant_a) is None


# --- who may set, raise, lower or remove the limit ----------------------------------------


@pytest.fixture
def tenant_admin(api_client_for, tenant_a):
    return api_client_for(tenant_a, scopes=[MULTIMODAL_ADMIN, MULTIMODAL_READ])


def set_limit(client, tenant, amount):
    return client.post(policy_url(tenant), {"daily_spend_limit_usd": amount}, format="json")


@pytest.mark.parametrize(("current", "wanted", "allowed"), [
    (None, "5.00", True),  # a limit where there was none only holds the tenant tighter
    (None, None, True),  # nothing to remove
    ("10.00", "5.00", True),  # lower
    ("10.00", "10", True),  # the same (a client re-sending its whole policy)
    ("10.00", "10.000001", False),  # raise, by a millionth
    ("10.00", "1000000", False),
    ("10.00", None, False),  # remove
    ("0", "0.000001", False),
])
def test_a_tenant_admin_may_lower_its_limit_but_not_raise_or_remove_it(
    operator_client, tenant_admin, tenant_a, current, wanted, allowed
):
    if current is not None:
        assert set_limit(operator_client, tenant_a, current).status_code == 200
    response = set_limit(tenant_admin, tenant_a, wanted)
    expected = Decimal(wanted) if allowed and wanted is not None else (
        None if allowed else Decimal(current))
    if allowed:
        assert response.status_code == 200, response.content
    else:
        assert response.status_code == 403, response.content
        body = response.json()
        assert body["code"] == "spend_limit_operator_only"
        assert "operator" in body["detail"] and current.rstrip("0").rstrip(".") in body["detail"]
        assert list(body["errors"]) == ["daily_spend_limit_usd"]
    assert limit_of(tenant_a) == expected


def test_a_refused_raise_changes_no_other_field_of_the_same_request(operator_client,
                                                                    tenant_admin, tenant_a):
    set_limit(operator_client, tenant_a, "10")
    response = tenant_admin.post(policy_url(tenant_a), {"daily_spend_limit_usd": "20",
                                                        "max_text_chars": 42}, format="json")
    assert response.status_code == 403
    policy = MultimodalPolicy.all_tenants.get(tenant=tenant_a)
    assert (policy.daily_spend_limit_usd, policy.max_text_chars) == (Decimal("10"), 5000)
    # Other fields alone are the tenant admin's to change, as before.
    response = tenant_admin.post(policy_url(tenant_a), {"max_text_chars": 42}, format="json")
    assert response.status_code == 200


def test_an_operator_token_raises_and_removes_a_limit(operator_client, tenant_admin, tenant_a):
    assert set_limit(tenant_admin, tenant_a, "5").status_code == 200
    assert set_limit(operator_client, tenant_a, "50").status_code == 200
    assert limit_of(tenant_a) == Decimal("50")
    assert set_limit(operator_client, tenant_a, None).status_code == 200
    assert limit_of(tenant_a) is None
