"""The platform's price table (DESIGN §7.4): seeded by a data migration, read by any tenant
with multimodal:read, changed only by operators (an all-tenants token with multimodal:admin,
or staff with the permission in the admin), and costs that keep the price they were made
with."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission, User

from agent33.auth.scopes import ADMIN, MULTIMODAL_ADMIN, MULTIMODAL_READ
from agent33.tenancy.context import tenant_scope
from multimodal.models import MultimodalResult, ProviderPrice
from multimodal.pricing import cost_of
from tests.multimodal.conftest import REQUESTS

pytestmark = pytest.mark.django_db

PRICES = "/v1/multimodal/prices"


def price_url(provider: str, model: str) -> str:
    return f"{PRICES}/{provider}/{model}"


def test_the_migration_seeds_dated_list_prices_and_keeps_existing_rows():
    seeding = importlib.import_module("multimodal.migrations.0007_seed_prices")
    assert "2026-11-27" in seeding.__doc__ and "2026-11-27" in seeding.SEEDED_BY
    ProviderPrice.objects.create(provider="openai", model="tts-1",
                                 usd_per_unit={"characters": "0.00002"}, updated_by="ops")
    seeding.seed(apps, None)
    rows = {(p.provider, p.model): p.usd_per_unit for p in ProviderPrice.objects.all()}
    assert rows[("openai", "tts-1")] == {"characters": "0.00002"}  # an operator's, kept
    assert rows[("openai", "tts-1-hd")] == {"characters": "0.00003"}  # $30 / 1M characters
    assert rows[("openai", "whisper-1")] == {"audio_seconds": "0.0001"}  # $0.006 / minute
    assert rows[("openai", "gpt-4o-mini")] == {"input_tokens": "0.00000015",
                                                "output_tokens": "0.0000006"}
    assert rows[("elevenlabs", "eleven_multilingual_v2")] == {"characters": "0.0001"}
    assert rows[("espeak", "espeak-ng")] == {"compute_seconds": "0.00002"}
    seeding.unseed(apps, None)
    assert list(ProviderPrice.objects.values_list("model", flat=True)) == ["tts-1"]


def test_any_tenant_reads_the_price_table(api_client_for, tenant_a, prices):
    reader = api_client_for(tenant_a, scopes=[MULTIMODAL_READ])
    response = reader.get(PRICES, {"provider": "openai", "limit": 100})
    assert response.status_code == 200
    rows = {row["model"]: row for row in response.json()}
    assert set(rows) == {m for (p, m) in prices if p == "openai"}
    assert set(rows["tts-1"]) == {"provider", "model", "usd_per_unit", "version", "updated_at"}
    assert rows["tts-1"]["usd_per_unit"] == {"characters": "0.000015"}


def test_the_price_list_pages_newest_change_first(api_client_for, tenant_a, prices):
    reader = api_client_for(tenant_a, scopes=[MULTIMODAL_READ])
    seen, url = [], f"{PRICES}?limit=5"
    while url:
        response = reader.get(url)
        seen += [(row["provider"], row["model"]) for row in response.json()]
        link = response.headers.get("Link", "")
        url = link[1:link.index(">")].removeprefix("http://testserver") if link else None
    assert sorted(seen) == sorted(prices)


def test_an_operator_sets_a_price_and_each_change_is_a_new_version(operator_client, prices):
    response = operator_client.put(price_url("openai", "tts-1"),
                                   {"usd_per_unit": {"characters": "1.6E-5"}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["usd_per_unit"] == {"characters": "0.000016"}
    assert response.json()["version"] == 2
    created = operator_client.put(price_url("openai-compatible", "meta-llama/Llama-3.2-11B"),
                                  {"usd_per_unit": {"input_tokens": "0", "output_tokens": "0"}},
                                  format="json")
    assert created.status_code == 200, created.content
    assert created.json()["model"] == "meta-llama/Llama-3.2-11B"
    assert created.json()["version"] == 1
    stored = ProviderPrice.objects.get(provider="openai", model="tts-1")
    assert stored.updated_by.startswith("token:")


@pytest.mark.parametrize("scopes", [[ADMIN], [MULTIMODAL_ADMIN]])
def test_a_tenant_token_cannot_change_prices(api_client_for, tenant_a, prices, scopes):
    tenant_admin = api_client_for(tenant_a, scopes=scopes)
    response = tenant_admin.put(price_url("openai", "tts-1"),
                                {"usd_per_unit": {"characters": "0"}}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "operator_token_required"
    assert ProviderPrice.objects.get(provider="openai", model="tts-1").usd_per_unit == {
        "characters": "0.000015"}


@pytest.mark.parametrize(("body", "field"), [
    ({"usd_per_unit": {"minutes": "0.006"}}, "usd_per_unit.minutes"),
    ({"usd_per_unit": {"characters": 0.000015}}, "usd_per_unit.characters"),  # a float
    ({"usd_per_unit": {"characters": "-1"}}, "usd_per_unit.characters"),
    ({"usd_per_unit": {"characters": "0.0000000000001"}}, "usd_per_unit.characters"),
    ({"usd_per_unit": {"characters": "NaN"}}, "usd_per_unit.characters"),
    ({"usd_per_unit": {"characters": "5000"}}, "usd_per_unit.characters"),
    ({"usd_per_unit": {}}, "usd_per_unit"),
    ({}, "usd_per_unit"),
])
def test_bad_prices_are_a_400_naming_the_unit(operator_client, body, field):
    response = operator_client.put(price_url("openai", "tts-1"), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert not ProviderPrice.objects.exists()


def test_unknown_provider_or_bad_model_name(operator_client):
    body = {"usd_per_unit": {"characters": "0.1"}}
    unknown = operator_client.put(price_url("acme-tts", "v1"), body, format="json")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_provider")
    bad = operator_client.put(price_url("openai", "-tts"), body, format="json")
    assert bad.status_code == 400 and "model" in bad.json()["errors"]


def test_a_later_price_change_does_not_rewrite_a_result(client_a, operator_client, run,
                                                        prices):
    first, first_result = run(client_a, modality="text_to_speech", input_text="Before.")
    operator_client.put(price_url("espeak", "espeak-ng"),
                        {"usd_per_unit": {"compute_seconds": "1"}}, format="json")
    _, second_result = run(client_a, modality="text_to_speech", input_text="After.")

    old = client_a.get(f"{REQUESTS}/{first['id']}/result").json()["metadata"]
    assert old == first_result["metadata"]
    assert old["price"]["version"] == 1
    assert old["price"]["usd_per_unit"] == {"compute_seconds": "0.00002"}
    new = second_result["metadata"]
    assert new["price"]["version"] == 2
    assert Decimal(new["cost_usd"]) == Decimal(str(new["usage"]["compute_seconds"]))


def test_costs_are_exact_decimals_rounded_once_to_a_nano_dollar():
    price = {"input_tokens": "0.00000015", "output_tokens": "0.0000006"}
    assert cost_of({"input_tokens": 3, "output_tokens": 1}, price, what="x").usd == \
        Decimal("0.00000105")
    # 1 token at $0.0375 per million is 0.0000000375: rounded half up to 0.000000038.
    assert cost_of({"input_tokens": 1}, {"input_tokens": "0.0000000375"}, what="x").usd == \
        Decimal("0.000000038")
    # Units the row does not price are free; units it prices must be reported.
    assert cost_of({"characters": 5, "compute_seconds": 0.25},
                   {"compute_seconds": "0.00002"}, what="x").usd == Decimal("0.000005")
    unknown = cost_of({"input_tokens": 3}, price, what="openai/gpt-4o-mini")
    assert unknown.usd is None and "output_tokens" in unknown.note
    assert cost_of({"characters": 1}, None, what="acme/x").note == \
        "no price for acme/x in the price table"


def test_without_a_price_the_cost_is_unknown_and_says_why(client_a, tenant_a, run):
    _, result = run(client_a, modality="text_to_speech", input_text="Unpriced.")
    meta = result["metadata"]
    assert meta["cost_usd"] is None and meta["price"] is None
    assert meta["cost_note"] == "no price for espeak/espeak-ng in the price table"
    assert meta["usage"]["characters"] == 9
    with tenant_scope(tenant_a):
        assert MultimodalResult.objects.get().cost_nano_usd is None


# --- the admin ------------------------------------------------------------------------------


def staff(client, *, superuser: bool = False, permissions: tuple[str, ...] = ()):
    user = User.objects.create_user("pricer", password="pw", is_staff=True,
                                    is_superuser=superuser)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="multimodal", codename__in=permissions))
    client.force_login(user)
    return client


def test_staff_with_the_permission_edit_a_price_through_the_service(client, prices):
    staff(client, permissions=("view_providerprice", "change_providerprice"))
    price = ProviderPrice.objects.get(provider="openai", model="tts-1")
    url = f"/admin/multimodal/providerprice/{price.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200 and b"USD per characters" in page.content
    response = client.post(url, {"usd_per_characters": "0.00002", "usd_per_audio_seconds": "",
                                 "usd_per_input_tokens": "", "usd_per_output_tokens": "",
                                 "usd_per_compute_seconds": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    price.refresh_from_db()
    assert (price.usd_per_unit, price.version) == ({"characters": "0.00002"}, 2)
    assert price.updated_by == "user:pricer"


def test_a_bad_price_in_the_admin_is_a_form_error(client, prices):
    staff(client, superuser=True)
    price = ProviderPrice.objects.get(provider="openai", model="tts-1")
    response = client.post(f"/admin/multimodal/providerprice/{price.pk}/change/",
                           {"usd_per_characters": "-3"})
    assert response.status_code == 200
    assert b"must not be negative" in response.content
    price.refresh_from_db()
    assert price.version == 1


def test_staff_without_the_permission_cannot_change_prices(client, prices):
    staff(client, permissions=("view_providerprice",))
    price = ProviderPrice.objects.get(provider="openai", model="tts-1")
    url = f"/admin/multimodal/providerprice/{price.pk}/change/"
    assert client.get(url).status_code == 200  # can look
    client.post(url, {"usd_per_characters": "0"})
    price.refresh_from_db()
    assert price.version == 1


def test_nul_characters_are_a_400_not_a_database_error(operator_client, api_client_for,
                                                       tenant_a):
    reader = api_client_for(tenant_a, scopes=[MULTIMODAL_READ])
    assert reader.get(PRICES, {"provider": "open\x00ai"}).status_code == 400
    body = {"usd_per_unit": {"characters": "0.1"}}
    assert operator_client.put(price_url("openai", "tts%00-1"), body,
                               format="json").status_code == 400
    assert operator_client.put(price_url("open%00ai", "tts-1"), body,
                               format="json").status_code == 404
