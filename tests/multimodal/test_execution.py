"""Execution in-process: the claim, the task body under redelivery, cancel racing a result,
deadlines, provider errors, the reaper, tenant scopes, and the state machine table.

Tests without `transaction=True` run inside one transaction, so on-commit callbacks (the
task enqueue) never fire: each test calls the task (`tasks.execute_request`) itself, exactly
as a worker would, which lets it interleave deliveries, cancels and the reaper
deterministically. Services are called in the request's tenant scope, as the API calls them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from agent33.errors import NotFound, StateConflict
from agent33.tenancy.context import TenantScopeMissing, tenant_scope
from multimodal import services, tasks
from multimodal.choices import ALLOWED_TRANSITIONS, REQUEST_MACHINE, TERMINAL, RequestState
from multimodal.models import Artifact, MultimodalRequest, MultimodalResult
from multimodal.providers.audio import pcm16_to_wav
from multimodal.providers.base import (
    MODALITY_SPEECH_TO_TEXT,
    MODALITY_TEXT_TO_SPEECH,
    MODALITY_VISION,
    Option,
    Provider,
    ProviderCall,
    ProviderError,
    ProviderOutput,
)
from multimodal.providers.registry import register_provider, unregister_provider
from multimodal.services.requests import request_end
from operations.models import StatusChange
from tests.factories.multimodal import ImageArtifactFactory, MultimodalRequestFactory
from tests.origins import operator

ACTOR = "token:test"


class HookProvider(Provider):
    """A provider whose behaviour each test sets: `hook(text, call)` runs inside the call."""

    name = "test-hook"
    modalities = frozenset({MODALITY_TEXT_TO_SPEECH, MODALITY_SPEECH_TO_TEXT, MODALITY_VISION})
    # Takes a prompt with an image, so a vision request's input_text reaches it as one.
    options = {MODALITY_VISION: {"prompt": Option("string")}}

    def __init__(self) -> None:
        self.hook: Callable[[str, ProviderCall], Any] = lambda text, call: None
        self.calls = 0

    def synthesize(self, text: str, call: ProviderCall) -> ProviderOutput:
        self.calls += 1
        returned = self.hook(text, call)
        if isinstance(returned, ProviderOutput):
            return returned
        return ProviderOutput(model="hook-1", output_bytes=pcm16_to_wav(b"\x00\x00" * 800, 8000),
                              output_content_type="audio/wav", output_data={"ok": True},
                              attempts=2)

    def analyze(self, image: bytes, content_type: str, call: ProviderCall) -> ProviderOutput:
        self.calls += 1
        self.hook(content_type, call)
        return ProviderOutput(model="hook-vision", output_text="a picture")


@pytest.fixture
def hook() -> Iterator[HookProvider]:
    provider = register_provider(HookProvider())
    yield provider
    unregister_provider(provider.name)


def execute(mm_request: MultimodalRequest) -> MultimodalRequest:
    with tenant_scope(mm_request.tenant):
        return services.request_execute(mm_request=mm_request, origin=operator(ACTOR))


def cancel(mm_request: MultimodalRequest, *, actor: str = ACTOR,
           reason: str = "") -> MultimodalRequest:
    with tenant_scope(mm_request.tenant):
        return services.request_cancel(mm_request=mm_request, origin=operator(actor), reason=reason)


def run(mm_request: MultimodalRequest, claim_token: str) -> str:
    """One delivery of the execution task, as a worker runs it (it sets the tenant scope)."""
    return tasks.execute_request(mm_request.pk, claim_token, mm_request.tenant_id)


def claimed(tenant, **kwargs) -> tuple[MultimodalRequest, str]:
    """A request claimed for execution (the enqueue never fires inside a test transaction)."""
    mm_request = MultimodalRequestFactory(tenant=tenant, provider="test-hook", **kwargs)
    execute(mm_request)
    mm_request.refresh_from_db()
    assert mm_request.state == RequestState.PROCESSING
    return mm_request, mm_request.claim_token


def results_of(mm_request) -> list[MultimodalResult]:
    return list(MultimodalResult.all_tenants.filter(request=mm_request))


# --- the state machine -------------------------------------------------------------------


def test_transition_table_is_consistent():
    assert REQUEST_MACHINE.sources_of(RequestState.PROCESSING) == ("pending", "failed")
    assert REQUEST_MACHINE.sources_of(RequestState.CANCELLED) == ("pending", "processing")
    assert REQUEST_MACHINE.sources_of(RequestState.COMPLETED) == ("processing",)
    assert {"completed", "failed", "cancelled"} == TERMINAL
    for state in TERMINAL - {"failed"}:
        assert ALLOWED_TRANSITIONS[state] == frozenset()


@pytest.mark.django_db
@pytest.mark.parametrize("state", RequestState.values)
def test_execute_and_cancel_follow_the_table(tenant_a, hook, state):
    mm_request = MultimodalRequestFactory(tenant=tenant_a, provider="test-hook", state=state)
    may_execute = RequestState.PROCESSING in ALLOWED_TRANSITIONS[state]
    if may_execute:
        assert execute(mm_request).state == "processing"
    else:
        with pytest.raises(StateConflict):
            execute(mm_request)

    mm_request = MultimodalRequestFactory(tenant=tenant_a, provider="test-hook", state=state)
    may_cancel = RequestState.CANCELLED in ALLOWED_TRANSITIONS[state]
    if may_cancel or state == RequestState.CANCELLED:
        assert cancel(mm_request).state == "cancelled"
    else:
        with pytest.raises(StateConflict):
            cancel(mm_request)


# --- the task body -------------------------------------------------------------------------


@pytest.mark.django_db
def test_run_completes_once_and_a_second_delivery_does_nothing(tenant_a, hook):
    mm_request, token = claimed(tenant_a)
    assert run(mm_request, token) == "completed"
    assert run(mm_request, token) == "skipped"
    mm_request.refresh_from_db()
    assert mm_request.state == "completed" and mm_request.attempts == 1
    [result] = results_of(mm_request)
    assert result.output_artifact.content_type == "audio/wav"
    assert result.metadata["provider"] == "test-hook"
    assert result.metadata["model"] == "hook-1"
    assert result.metadata["attempts"] == 2  # the provider's own (HTTP) attempts
    assert result.metadata["execution_attempts"] == 1
    assert result.latency_ms is not None and result.provider == "test-hook"
    assert hook.calls == 1


@pytest.mark.django_db
def test_redelivery_after_a_dead_worker_finishes_the_job_once(tenant_a, hook):
    mm_request, token = claimed(tenant_a)
    # A first delivery started and its worker died before finishing.
    MultimodalRequest.all_tenants.filter(pk=mm_request.pk).update(attempts=1,
                                                                  started_at=timezone.now())
    assert run(mm_request, token) == "completed"
    assert run(mm_request, token) == "skipped"
    [result] = results_of(mm_request)
    assert result.metadata["execution_attempts"] == 2


@pytest.mark.django_db
def test_cancel_during_processing_wins_over_the_late_result(tenant_a, hook):
    mm_request, token = claimed(tenant_a)

    def cancel_meanwhile(text, call):
        cancel(mm_request, actor="token:someone", reason="changed my mind")

    hook.hook = cancel_meanwhile
    assert run(mm_request, token) == "discarded"
    mm_request.refresh_from_db()
    assert mm_request.state == "cancelled" and mm_request.cancel_reason == "changed my mind"
    assert results_of(mm_request) == []
    # The late output was not kept.
    assert not Artifact.all_tenants.filter(origin="output").exists()


@pytest.mark.django_db
def test_a_straggler_from_an_earlier_claim_cannot_finish_a_new_execution(tenant_a, hook):
    mm_request, old_token = claimed(tenant_a)
    services.reap_timeouts(now=timezone.now() + timedelta(hours=1))
    mm_request.refresh_from_db()
    assert mm_request.state == "failed"
    execute(mm_request)
    mm_request.refresh_from_db()
    assert mm_request.claim_token != old_token
    assert run(mm_request, old_token) == "skipped"
    assert run(mm_request, mm_request.claim_token) == "completed"
    assert [r.state for r in results_of(mm_request)] == ["completed"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("raise_", "expected"),
    [
        (ProviderError("test-hook", "quota exceeded (HTTP 429)"),
         "test-hook: quota exceeded (HTTP 429)"),
        (RuntimeError("segfault-ish"), "test-hook: unexpected error: RuntimeError: segfault-ish"),
    ],
)
def test_provider_errors_fail_the_request_naming_the_provider(tenant_a, hook, raise_, expected):
    mm_request, token = claimed(tenant_a)

    def boom(text, call):
        raise raise_

    hook.hook = boom
    assert run(mm_request, token) == "failed"
    mm_request.refresh_from_db()
    assert mm_request.state == "failed"
    assert mm_request.error_message == expected
    [result] = results_of(mm_request)
    assert result.state == "failed" and result.output_artifact is None
    assert result.metadata["error"] == expected
    assert result.metadata["provider"] == "test-hook"


@pytest.mark.django_db
def test_unknown_provider_at_run_time_fails_clearly(tenant_a):
    mm_request = MultimodalRequestFactory(tenant=tenant_a, provider="retired-engine")
    execute(mm_request)
    mm_request.refresh_from_db()
    assert run(mm_request, mm_request.claim_token) == "failed"
    mm_request.refresh_from_db()
    assert mm_request.error_message == "retired-engine: unknown provider"


@pytest.mark.django_db
def test_a_run_that_starts_past_the_deadline_times_out(tenant_a, hook):
    mm_request, token = claimed(tenant_a, requested_timeout_seconds=7)
    MultimodalRequest.all_tenants.filter(pk=mm_request.pk).update(
        deadline_at=timezone.now() - timedelta(seconds=1)
    )
    assert run(mm_request, token) == "failed"
    mm_request.refresh_from_db()
    assert mm_request.error_message == "timed out after 7 s"
    assert hook.calls == 0


@pytest.mark.django_db
def test_output_after_the_deadline_is_discarded(tenant_a, hook):
    mm_request, token = claimed(tenant_a, requested_timeout_seconds=5)

    MultimodalRequest.all_tenants.filter(pk=mm_request.pk).update(
        deadline_at=timezone.now() + timedelta(milliseconds=150)
    )
    # A provider that ignores its deadline and answers late.
    hook.hook = lambda text, call: time.sleep(0.3)
    assert run(mm_request, token) == "failed"
    mm_request.refresh_from_db()
    assert mm_request.error_message == "timed out after 5 s"
    assert not Artifact.all_tenants.filter(origin="output").exists()


@pytest.mark.django_db
def test_output_that_is_not_a_supported_format_fails(tenant_a, hook):
    mm_request, token = claimed(tenant_a)
    hook.hook = lambda text, call: ProviderOutput(model="x", output_bytes=b"<html>oops</html>")
    assert run(mm_request, token) == "failed"
    mm_request.refresh_from_db()
    assert mm_request.error_message.startswith("test-hook: returned output that is not")


@pytest.mark.django_db
def test_the_deadline_reaches_the_provider(tenant_a, hook):
    mm_request, token = claimed(tenant_a, requested_timeout_seconds=9)
    seen = {}
    hook.hook = lambda text, call: seen.setdefault("remaining", call.remaining())
    run(mm_request, token)
    assert 7 < seen["remaining"] <= 9


@pytest.mark.django_db
def test_vision_input_text_is_passed_as_the_prompt(tenant_a, hook):
    image = ImageArtifactFactory(tenant=tenant_a)
    mm_request, token = claimed(tenant_a, modality="vision_analysis", input_artifact=image,
                                input_text="How many cats?")
    seen = {}
    hook.hook = lambda content_type, call: seen.update(type=content_type, **call.options)
    assert run(mm_request, token) == "completed"
    assert seen == {"type": "image/png", "prompt": "How many cats?"}
    assert results_of(mm_request)[0].output_text == "a picture"


@pytest.mark.django_db
def test_broker_failure_fails_the_request_at_once(tenant_a, hook, monkeypatch):
    mm_request, token = claimed(tenant_a)

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(tasks.execute_request, "apply_async", refuse)
    tasks.enqueue_execution(mm_request.pk, token, 60, tenant_id=tenant_a.pk)
    mm_request.refresh_from_db()
    assert mm_request.state == "failed"
    assert mm_request.error_message == (
        "could not queue the request for execution: ConnectionRefusedError: broker down"
    )


@pytest.mark.django_db
def test_every_end_calls_the_ended_hook_once(tenant_a, hook, monkeypatch,
                                             django_capture_on_commit_callbacks):
    ended: list[tuple[str, str]] = []
    monkeypatch.setattr("multimodal.services.requests.request_ended",
                        lambda mm_request, state, **_: ended.append((mm_request.pk, state)))
    with django_capture_on_commit_callbacks(execute=True):
        done, _ = claimed(tenant_a)
    # (the enqueue ran eagerly on the captured commit and completed the request)
    done.refresh_from_db()
    assert done.state == "completed"
    with django_capture_on_commit_callbacks(execute=True):
        cancelled = MultimodalRequestFactory(tenant=tenant_a, provider="test-hook")
        cancel(cancelled)
        cancel(cancelled)  # no second end
    assert ended == [(done.pk, "completed"), (cancelled.pk, "cancelled")]


@pytest.mark.django_db
def test_a_policy_lowered_after_the_claim_binds_the_engine_call(tenant_a, hook):
    from multimodal.models import MultimodalPolicy

    deadlines: list[float] = []
    hook.hook = lambda text, call: deadlines.append(call.remaining())
    mm_request, token = claimed(tenant_a, requested_timeout_seconds=120)
    assert run(mm_request, token) == "completed"
    again, token = claimed(tenant_a, requested_timeout_seconds=120)
    MultimodalPolicy.all_tenants.create(tenant=tenant_a, max_timeout_seconds=5)
    assert run(again, token) == "completed"
    assert 119 < deadlines[0] <= 120  # the request's own timeout, under the default cap
    assert 4 < deadlines[1] <= 5


@pytest.mark.django_db(transaction=True)
def test_an_ending_and_its_outcome_events_commit_together(tenant_a, refused_outcome_counts):
    from django.db import IntegrityError

    from outcomes.models import OutcomeEvent

    mm_request = MultimodalRequestFactory(
        tenant=tenant_a, state="processing", claim_token="claim",
        deadline_at=timezone.now() + timedelta(minutes=1))
    with pytest.raises(IntegrityError), tenant_scope(tenant_a):
        request_end(mm_request, "failed", origin=operator(), error_message="boom",
                    claim_token="claim")
    mm_request.refresh_from_db()
    assert mm_request.state == "processing"
    assert not OutcomeEvent.all_tenants.exists()
    assert not StatusChange.all_tenants.exists()  # the history row rolled back with it


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["api", "hub", "admin"])
def test_a_cancellation_is_never_an_outcome(tenant_a, hook, path):
    """Only a request's own ending is an outcome (DESIGN §8.1): cancelling records no
    outcome event, whoever cancels and whichever path they take, and the history says
    who did it."""
    from outcomes.models import OutcomeEvent

    pending = MultimodalRequestFactory(tenant=tenant_a)
    running, _ = claimed(tenant_a)
    for mm_request in (pending, running):
        with tenant_scope(tenant_a):
            services.request_cancel(mm_request=mm_request,
                                    origin=operator("user:ops", path=path), reason="stop")
        mm_request.refresh_from_db()
        assert mm_request.state == "cancelled"
    assert not OutcomeEvent.all_tenants.exists()
    rows = StatusChange.all_tenants.filter(action="cancel").order_by("created_at", "id")
    assert [(r.process_id, r.state_before, r.state_after, r.action, r.cause, r.path, r.actor,
             r.reason) for r in rows] == [
        (pending.pk, "pending", "cancelled", "cancel", "operator", path, "user:ops", "stop"),
        (running.pk, "processing", "cancelled", "cancel", "operator", path, "user:ops", "stop"),
    ]


# --- tenant scopes ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_services_refuse_to_run_without_a_tenant_scope(tenant_a, hook):
    mm_request = MultimodalRequestFactory(tenant=tenant_a, provider="test-hook")
    attempts = [
        lambda: services.request_execute(mm_request=mm_request, origin=operator(ACTOR)),
        lambda: services.request_cancel(mm_request=mm_request, origin=operator(ACTOR)),
        lambda: services.request_run(mm_request.pk, "any-token"),
    ]
    for attempt in attempts:
        # Each in a savepoint, as the refused query leaves its transaction unusable.
        with pytest.raises(TenantScopeMissing), transaction.atomic():
            attempt()
    mm_request.refresh_from_db()
    assert mm_request.state == "pending" and mm_request.attempts == 0


@pytest.mark.django_db
def test_another_tenants_scope_cannot_run_or_cancel_a_request(tenant_a, tenant_b, hook):
    mm_request, token = claimed(tenant_a)
    with tenant_scope(tenant_b):
        assert services.request_run(mm_request.pk, token) == "skipped"
        with pytest.raises(NotFound):
            services.request_cancel(mm_request=mm_request, origin=operator(ACTOR))
    mm_request.refresh_from_db()
    assert mm_request.state == "processing" and mm_request.attempts == 0
    assert hook.calls == 0


@pytest.mark.django_db
def test_a_task_message_queued_without_the_tenant_still_runs(tenant_a, hook):
    # Messages queued by the previous release carry (request_id, claim_token) only.
    mm_request, token = claimed(tenant_a)
    assert tasks.execute_request(mm_request.pk, token) == "completed"
    assert tasks.execute_request("mmreq-gone", token) == "skipped"
    mm_request.refresh_from_db()
    assert mm_request.state == "completed"
    assert [r.state for r in results_of(mm_request)] == ["completed"]


# --- the reaper ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_reaper_fails_only_requests_past_deadline_plus_grace(tenant_a, tenant_b, hook):
    now = timezone.now()
    overdue, _ = claimed(tenant_a, requested_timeout_seconds=12)
    in_grace, _ = claimed(tenant_b)
    fresh, _ = claimed(tenant_a)
    pending = MultimodalRequestFactory(tenant=tenant_a)
    MultimodalRequest.all_tenants.filter(pk=overdue.pk).update(deadline_at=now - timedelta(
        seconds=31))
    MultimodalRequest.all_tenants.filter(pk=in_grace.pk).update(deadline_at=now - timedelta(
        seconds=29))
    overdue_b, _ = claimed(tenant_b)
    MultimodalRequest.all_tenants.filter(pk=overdue_b.pk).update(deadline_at=now - timedelta(
        seconds=40))

    # Every tenant's overdue requests, oldest deadline first.
    assert services.reap_timeouts(now=now, grace_seconds=30) == [overdue_b.pk, overdue.pk]
    overdue.refresh_from_db()
    assert overdue.state == "failed" and overdue.error_message == "timed out after 12 s"
    [result] = results_of(overdue)
    assert result.state == "failed" and result.metadata["error"] == "timed out after 12 s"
    for untouched in (in_grace, fresh):
        untouched.refresh_from_db()
        assert untouched.state == "processing"
    pending.refresh_from_db()
    assert pending.state == "pending"
    # Reaping again finds nothing new.
    assert services.reap_timeouts(now=now, grace_seconds=30) == []


@pytest.mark.django_db
def test_a_worker_finishing_a_reaped_request_discards_its_output(tenant_a, hook):
    mm_request, token = claimed(tenant_a)
    hook.hook = lambda text, call: services.reap_timeouts(
        now=timezone.now() + timedelta(hours=1)
    )
    assert run(mm_request, token) == "discarded"
    mm_request.refresh_from_db()
    assert mm_request.state == "failed" and mm_request.error_message.startswith("timed out")
    assert [r.state for r in results_of(mm_request)] == ["failed"]
    assert not Artifact.all_tenants.filter(origin="output").exists()


@pytest.mark.django_db
def test_reap_timeouts_command_and_task(tenant_a, hook, capsys):
    mm_request, _ = claimed(tenant_a, requested_timeout_seconds=3)
    MultimodalRequest.all_tenants.filter(pk=mm_request.pk).update(
        deadline_at=timezone.now() - timedelta(minutes=5)
    )
    call_command("reap_timeouts")
    out = capsys.readouterr().out
    assert f"failed {mm_request.pk}: timed out" in out
    assert "Reaped 1 timed-out request(s)." in out
    assert tasks.reap_timeouts.delay().get(timeout=5) == 0


@pytest.mark.django_db
def test_reap_timeouts_command_rejects_negative_grace():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--grace"):
        call_command("reap_timeouts", "--grace", "-1")


# --- races on PostgreSQL -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_execute_calls_claim_exactly_once(require_postgres, tenant_a, hook):
    mm_request = MultimodalRequestFactory(tenant=tenant_a, provider="test-hook")
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def execute_at_once() -> None:
        try:
            barrier.wait()
            execute(mm_request)
            outcomes.append("ok")
        except StateConflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=execute_at_once) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["ok"]
    mm_request.refresh_from_db()
    assert mm_request.state == "completed" and mm_request.attempts == 1
    assert len(results_of(mm_request)) == 1


@pytest.mark.django_db(transaction=True)
def test_cancel_racing_the_finish_leaves_one_consistent_outcome(require_postgres, tenant_a,
                                                               hook):
    for _ in range(5):
        mm_request = MultimodalRequestFactory(tenant=tenant_a, provider="test-hook")
        MultimodalRequest.all_tenants.filter(pk=mm_request.pk).update(
            state="processing", claim_token="t", deadline_at=timezone.now() + timedelta(
                minutes=1)
        )
        barrier = threading.Barrier(2)
        hook.hook = lambda text, call, barrier=barrier: barrier.wait()

        def deliver(target=mm_request) -> None:
            try:
                run(target, "t")
            finally:
                connection.close()

        def cancel_meanwhile(target=mm_request, barrier=barrier) -> None:
            try:
                barrier.wait()
                cancel(target)
            except StateConflict:
                pass
            finally:
                connection.close()

        threads = [threading.Thread(target=deliver), threading.Thread(target=cancel_meanwhile)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        mm_request.refresh_from_db()
        results = results_of(mm_request)
        if mm_request.state == "cancelled":
            assert results == []
        else:
            assert mm_request.state == "completed" and len(results) == 1
