"""Staff pages: tenant-limited lists and content, players and previews, filters, search,
Execute / Cancel actions through the services, editable policies."""

from __future__ import annotations

import pytest
from django.urls import reverse

from multimodal.models import MultimodalPolicy, MultimodalRequest, MultimodalResult
from tests.conftest import STAFF_PASSWORD
from tests.factories.multimodal import (
    ArtifactFactory,
    ImageArtifactFactory,
    MultimodalRequestFactory,
    MultimodalResultFactory,
    SpeechToTextRequestFactory,
)

CHANGELIST = "/admin/multimodal/multimodalrequest/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(staff_user_factory, tenant_a, tenant_b, client):
    """Staff granted tenant A only."""
    staff_user_factory("alice", tenants=[tenant_a])
    client.login(username="alice", password=STAFF_PASSWORD)
    return client


@pytest.fixture
def root(staff_user_factory, client):
    staff_user_factory("root", superuser=True)
    client.login(username="root", password=STAFF_PASSWORD)
    return client


def test_limited_staff_see_only_granted_tenants(alice, tenant_a, tenant_b):
    mine = MultimodalRequestFactory(tenant=tenant_a, input_text="mine")
    theirs = MultimodalRequestFactory(tenant=tenant_b, input_text="theirs")
    page = alice.get(CHANGELIST).content.decode()
    assert mine.pk in page and theirs.pk not in page
    assert "tenant-b" not in page  # not even as a filter choice
    assert alice.get(f"{CHANGELIST}{theirs.pk}/change/").status_code == 302
    assert alice.get(f"{CHANGELIST}{mine.pk}/change/").status_code == 200


def test_artifact_content_view_is_tenant_limited(alice, tenant_a, tenant_b):
    mine, theirs = ArtifactFactory(tenant=tenant_a), ArtifactFactory(tenant=tenant_b)
    response = alice.get(reverse("admin:multimodal_artifact_content", args=[mine.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav"
    assert b"".join(response.streaming_content)[:4] == b"RIFF"
    assert alice.get(reverse("admin:multimodal_artifact_content",
                             args=[theirs.pk])).status_code == 404
    alice.logout()
    anonymous = alice.get(reverse("admin:multimodal_artifact_content", args=[mine.pk]))
    assert anonymous.status_code == 302  # to the login page


def test_request_page_has_players_and_previews(root, tenant_a):
    stt = SpeechToTextRequestFactory(tenant=tenant_a, state="completed")
    output = ArtifactFactory(tenant=tenant_a, origin="output")
    MultimodalResultFactory(tenant=tenant_a, request=stt, output_artifact=output,
                            output_text="hello world")
    page = root.get(f"{CHANGELIST}{stt.pk}/change/").content.decode()
    assert f'<audio controls preload="none" src="/admin/multimodal/artifact/' \
           f'{stt.input_artifact_id}/content/"' in page
    assert f"/admin/multimodal/artifact/{output.pk}/content/" in page
    assert "hello world" in page  # the result inline

    image = ImageArtifactFactory(tenant=tenant_a)
    vision = MultimodalRequestFactory(tenant=tenant_a, modality="vision_analysis",
                                      provider="tesseract", input_text="",
                                      input_artifact=image)
    page = root.get(f"{CHANGELIST}{vision.pk}/change/").content.decode()
    assert f'<img src="/admin/multimodal/artifact/{image.pk}/content/"' in page


def test_filters_and_search(root, tenant_a, tenant_b):
    tts = MultimodalRequestFactory(tenant=tenant_a, state="completed",
                                   input_text="find the needle")
    stt = SpeechToTextRequestFactory(tenant=tenant_b, state="failed",
                                     error_message="whisper-local: boom")

    def listed(query: str) -> set[str]:
        page = root.get(f"{CHANGELIST}{query}")
        assert page.status_code == 200
        html = page.content.decode()
        return {pk for pk in (tts.pk, stt.pk) if f"{pk}/change/" in html}

    assert listed("") == {tts.pk, stt.pk}
    assert listed("?modality__exact=speech_to_text") == {stt.pk}
    assert listed("?state__exact=completed") == {tts.pk}
    assert listed("?provider=whisper-local") == {stt.pk}
    assert listed("?tenant=tenant-a") == {tts.pk}
    assert listed("?created_at__gte=2000-01-01+00:00:00%2B00:00") == {tts.pk, stt.pk}
    assert listed("?q=needle") == {tts.pk}
    assert listed("?q=boom") == {stt.pk}


@pytest.mark.django_db(transaction=True)  # the execute runs on commit
def test_execute_and_cancel_actions_use_the_services(root, tenant_a):
    pending = MultimodalRequestFactory(tenant=tenant_a, input_text="Admin says hello.")
    done = MultimodalRequestFactory(tenant=tenant_a, state="completed")
    response = root.post(CHANGELIST, {"action": "execute_requests",
                                      "_selected_action": [pending.pk, done.pk]}, follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    assert "Executed: 1 request(s)." in text
    assert f"Skipped {done.pk}: Request {done.pk} is completed" in text
    pending.refresh_from_db()
    assert pending.state == "completed"  # eager: the engine ran on commit
    result = MultimodalResult.all_tenants.get(request=pending)
    assert result.output_artifact.content_type == "audio/wav"

    waiting = MultimodalRequestFactory(tenant=tenant_a)
    root.post(CHANGELIST, {"action": "cancel_requests", "_selected_action": [waiting.pk]})
    waiting.refresh_from_db()
    assert waiting.state == "cancelled"
    assert waiting.cancelled_by == "user:root"


def test_actions_cannot_touch_other_tenants(alice, tenant_b):
    theirs = MultimodalRequestFactory(tenant=tenant_b)
    alice.post(CHANGELIST, {"action": "cancel_requests", "_selected_action": [theirs.pk]})
    theirs.refresh_from_db()
    assert theirs.state == "pending"


def test_requests_are_not_added_or_deleted_in_the_admin(root, tenant_a):
    mm_request = MultimodalRequestFactory(tenant=tenant_a)
    assert root.get(f"{CHANGELIST}add/").status_code == 403
    assert root.get(f"{CHANGELIST}{mm_request.pk}/delete/").status_code == 403
    assert MultimodalRequest.all_tenants.filter(pk=mm_request.pk).exists()


def test_policies_are_editable(alice, tenant_a, tenant_b):
    url = "/admin/multimodal/multimodalpolicy/add/"
    form = {"tenant": tenant_a.pk, "max_text_chars": 120, "max_artifact_bytes": 1000,
            "max_timeout_seconds": 30, "allowed_modalities": ["text_to_speech"]}
    response = alice.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = MultimodalPolicy.all_tenants.get(tenant=tenant_a)
    assert (policy.max_text_chars, policy.allowed_modalities) == (120, ["text_to_speech"])
    assert policy.updated_by == "user:alice"

    change = f"/admin/multimodal/multimodalpolicy/{policy.pk}/change/"
    response = alice.post(change, {**form, "max_timeout_seconds": 99999})
    assert response.status_code == 200  # re-rendered with the error
    assert "max_timeout_seconds" in response.content.decode()
    response = alice.post(change, {**form, "max_timeout_seconds": 45})
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.max_timeout_seconds == 45

    # A tenant that is not granted cannot be chosen.
    response = alice.post(url, {**form, "tenant": tenant_b.pk})
    assert response.status_code == 200
    assert not MultimodalPolicy.all_tenants.filter(tenant=tenant_b).exists()


def test_every_multimodal_admin_page_renders(root, tenant_a, django_assert_max_num_queries):
    result = MultimodalResultFactory(tenant=tenant_a)
    artifact = ArtifactFactory(tenant=tenant_a)
    MultimodalPolicy.all_tenants.create(tenant=tenant_a)
    policy = MultimodalPolicy.all_tenants.get(tenant=tenant_a)
    for _ in range(5):
        MultimodalRequestFactory(tenant=tenant_a)
    pages = [
        CHANGELIST,
        f"{CHANGELIST}{result.request_id}/change/",
        "/admin/multimodal/artifact/",
        f"/admin/multimodal/artifact/{artifact.pk}/change/",
        "/admin/multimodal/multimodalpolicy/",
        f"/admin/multimodal/multimodalpolicy/{policy.pk}/change/",
        "/admin/multimodal/",
    ]
    for page in pages:
        assert root.get(page).status_code == 200, page
    with django_assert_max_num_queries(20):  # no query per row
        assert root.get(CHANGELIST).status_code == 200


def test_the_hubs_needs_attention_counts_requests_failed_in_the_last_hour(alice, tenant_a,
                                                                          tenant_b):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    recent = MultimodalRequestFactory(tenant=tenant_a, state="failed", finished_at=now)
    MultimodalRequestFactory(tenant=tenant_a, state="failed",
                             finished_at=now - timedelta(hours=2))  # too old
    MultimodalRequestFactory(tenant=tenant_a, state="completed", finished_at=now)
    MultimodalRequestFactory(tenant=tenant_b, state="failed", finished_at=now)  # not granted

    panels = alice.get("/admin/operations/hub/", {"format": "json", "panels": "1"}).json()
    html = panels["panels"]["attention"]
    assert 'id="attention-multimodalrequest-failed" data-count="1"' in html
    href = html.split('id="attention-multimodalrequest-failed"')[1].split('href="')[1]
    href = href.split('"')[0].replace("&amp;", "&")
    listed = alice.get(href)
    assert listed.status_code == 200
    assert [r.pk for r in listed.context["cl"].result_list] == [recent.pk]


def test_a_request_page_shows_usage_cost_and_the_price_used(root, tenant_a):
    metadata = {"provider": "openai", "model": "tts-1", "usage": {"characters": 100},
                "usage_source": "input", "cost_usd": "0.0015",
                "price": {"provider": "openai", "model": "tts-1",
                          "usd_per_unit": {"characters": "0.000015"}, "version": 3,
                          "updated_at": "2026-11-27T00:00:00+00:00"}}
    result = MultimodalResultFactory(tenant=tenant_a, metadata=metadata,
                                     cost_nano_usd=1_500_000)
    page = root.get(f"{CHANGELIST}{result.request_id}/change/").content.decode()
    assert "characters: 100" in page and "reported by: input" in page
    assert "$0.0015" in page
    assert "openai/tts-1: $0.000015 per characters" in page and "version 3" in page
    listing = root.get(CHANGELIST).content.decode()
    assert "$0.0015" in listing  # the cost column


def test_policies_show_the_limit_and_todays_spend(alice, tenant_a, tenant_b):
    from django.utils import timezone

    from multimodal.models import DailySpend

    MultimodalPolicy.all_tenants.create(tenant=tenant_a, daily_spend_limit_usd="5")
    DailySpend.all_tenants.create(tenant=tenant_a, day=timezone.now().date(),
                                  settled_nano_usd=1_250_000_000, reserved_nano_usd=10_000_000)
    DailySpend.all_tenants.create(tenant=tenant_b, day=timezone.now().date(),
                                  settled_nano_usd=7_770_000_000)
    listing = alice.get("/admin/multimodal/multimodalpolicy/").content.decode()
    assert "$5.00" in listing and "$1.25 (+$0.01 reserved)" in listing
    spend = alice.get("/admin/multimodal/dailyspend/").content.decode()
    assert "$1.25" in spend and "$7.77" not in spend  # tenant B is not granted

    form = {"tenant": tenant_a.pk, "max_text_chars": 5000, "max_artifact_bytes": 5000000,
            "max_timeout_seconds": 300, "allowed_modalities": ["text_to_speech"],
            "daily_spend_limit_usd": "7.5"}
    policy = MultimodalPolicy.all_tenants.get(tenant=tenant_a)
    response = alice.post(f"/admin/multimodal/multimodalpolicy/{policy.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    policy.refresh_from_db()
    assert str(policy.daily_spend_limit_usd) == "7.500000"


def test_the_hub_panel_shows_spend_and_todays_spend_against_the_limit(alice, tenant_a,
                                                                      tenant_b):
    from django.utils import timezone

    from multimodal.models import DailySpend

    MultimodalResultFactory(tenant=tenant_a, cost_nano_usd=2_000_000)
    MultimodalPolicy.all_tenants.create(tenant=tenant_a, daily_spend_limit_usd="0.5")
    DailySpend.all_tenants.create(tenant=tenant_a, day=timezone.now().date(),
                                  settled_nano_usd=250_000_000)
    DailySpend.all_tenants.create(tenant=tenant_b, day=timezone.now().date(),
                                  settled_nano_usd=999_000_000)
    html = alice.get("/admin/operations/hub/", {"format": "json", "panels": "1"}).json()[
        "panels"]["multimodal"]
    assert '<td class="mm-spend">$0.002' in html
    assert 'data-tenant="tenant-a"' in html and 'data-tenant="tenant-b"' not in html
    assert '<td class="mm-spent">$0.25</td>' in html
    assert '<td class="mm-limit">$0.50</td>' in html and "50 %" in html


def test_daily_spend_and_price_pages_render(root, tenant_a, prices):
    from django.utils import timezone

    from multimodal.models import DailySpend, ProviderPrice

    row = DailySpend.all_tenants.create(tenant=tenant_a, day=timezone.now().date())
    price = ProviderPrice.objects.first()
    for page in ("/admin/multimodal/dailyspend/",
                 f"/admin/multimodal/dailyspend/{row.pk}/change/",
                 "/admin/multimodal/providerprice/",
                 "/admin/multimodal/providerprice/add/",
                 f"/admin/multimodal/providerprice/{price.pk}/change/"):
        assert root.get(page).status_code == 200, page
