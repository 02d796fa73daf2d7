"""Golden tasks: fixed inputs with known answers, run through the real API of a real server.

`GoldenServer` migrates a fresh PostgreSQL database, creates a tenant and tokens with the
project's own commands, starts gunicorn on 127.0.0.1 (embedded mode: tasks run in the request)
and a loopback stand-in for the cloud providers (multimodal.provider_fakes). Each task then
talks HTTP only and returns its figures; a wrong answer raises AssertionError naming it.

Run by `bench/smoke.py` (`make bench-smoke`).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import statistics
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.common import (
    Figure,
    bench_env,
    drop_postgres_database,
    fresh_postgres_database,
    gunicorn,
    manage,
)
from multimodal import provider_fakes

__all__ = ["TASKS", "GoldenServer", "golden_server"]

DB_NAME = "agent33_smoke_golden"
TENANT = "golden"
PROVIDER_KEY = "sk-golden-loopback-0123456789"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PLATFORM_PROVIDER_SETTINGS = (
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "ELEVENLABS_API_KEY", "ELEVENLABS_BASE_URL",
    "OPENAI_COMPATIBLE_API_KEY", "OPENAI_COMPATIBLE_BASE_URL", "CELERY_BROKER_URL",
)


@dataclass
class GoldenServer:
    url: str
    tenant: httpx.Client  # the golden tenant's token, every scope
    operator: httpx.Client  # an all-tenants token: aims providers at the loopback fakes
    fakes: object  # pytest_httpserver.HTTPServer on 127.0.0.1


@contextmanager
def golden_server(log_path: Path) -> Iterator[GoldenServer]:
    from cryptography.fernet import Fernet
    from pytest_httpserver import HTTPServer

    database_url = fresh_postgres_database(DB_NAME)
    env = bench_env(
        database_url,
        MEDIA_ROOT=tempfile.mkdtemp(prefix="agent33-smoke-media-"),
        AGENT33_SECRET_KEYS=Fernet.generate_key().decode(),
        # The fakes listen on loopback, which provider base URLs may not name otherwise.
        AGENT33_PROVIDER_PRIVATE_NETWORKS="127.0.0.0/8",
    )
    for name in PLATFORM_PROVIDER_SETTINGS:  # no developer keys, no broker: embedded mode
        env.pop(name, None)
    with ExitStack() as stack:
        stack.callback(drop_postgres_database, DB_NAME)
        manage(env, "migrate", "--noinput")
        manage(env, "create_tenant", TENANT, "--name", "Golden tasks")
        tenant_token = manage(env, "issue_token", "--tenant", TENANT, "--scopes", "admin",
                              "--name", "golden").strip().splitlines()[-1]
        operator_token = manage(env, "issue_token", "--all-tenants", "--scopes", "admin",
                                "--name", "golden operator").strip().splitlines()[-1]
        log = stack.enter_context(log_path.open("w"))
        url = stack.enter_context(
            gunicorn(env, extra_args=("--timeout", "180"), stdout=log, stderr=log)
        )
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per fake request
        fakes = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        fakes.start()
        stack.callback(fakes.stop)

        def client(token: str) -> httpx.Client:
            return stack.enter_context(httpx.Client(
                base_url=url, timeout=120, headers={"Authorization": f"Bearer {token}"}))

        yield GoldenServer(url, client(tenant_token), client(operator_token), fakes)


# --- helpers -----------------------------------------------------------------------------


def expect(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path} answered "
        f"{response.status_code}, expected {status}: {response.text[:300]}"
    )
    return response.json() if response.content else {}


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = call()
    return response, (time.perf_counter() - started) * 1000


def _request(server: GoldenServer, **body) -> tuple[dict, dict, float]:
    """Create a multimodal request (executed within the call: embedded mode); return the
    request, its result and the call's milliseconds."""
    response, took = _timed(lambda: server.tenant.post("/v1/multimodal/requests", json=body))
    request = expect(response, 201)
    assert request["state"] == "completed", (
        f"{body['modality']} via {request['provider']} ended {request['state']}: "
        f"{request['error_message']}"
    )
    result = expect(server.tenant.get(f"/v1/multimodal/requests/{request['id']}/result"), 200)
    return request, result, took


def _artifact(server: GoldenServer, artifact_id: str) -> bytes:
    response = server.tenant.get(f"/v1/multimodal/artifacts/{artifact_id}/content")
    assert response.status_code == 200, f"artifact {artifact_id}: {response.status_code}"
    return response.content


def _upload(server: GoldenServer, name: str, data: bytes, content_type: str) -> str:
    response = server.tenant.post("/v1/multimodal/artifacts",
                                  files={"file": (name, data, content_type)})
    return expect(response, 201)["id"]


def _checks(checks: dict[str, bool]) -> Figure:
    failed = [name for name, ok in checks.items() if not ok]
    assert not failed, "wrong wire format: " + ", ".join(failed)
    return Figure("wire format checks met", len(checks), "checks", f"== {len(checks)}")


# --- offline engines ---------------------------------------------------------------------

SPEECH = "Please call Stella and ask her to bring these things from the store."
OCR_LINES = ("Invoice number 48213 due on 12 March", "Total amount payable: 1,250.00 EUR")


def speech_round_trip(server: GoldenServer) -> list[Figure]:
    """espeak says a sentence, whisper-local writes down what it hears."""
    import jiwer

    from bench.speech_quality import normalise

    _, result, tts_ms = _request(server, modality="text_to_speech", input_text=SPEECH,
                                      provider="espeak")
    audio = result["output_artifact_id"]
    assert audio, "the text-to-speech result has no audio artifact"
    _, result, stt_ms = _request(server, modality="speech_to_text",
                                     input_artifact_id=audio, provider="whisper-local")
    wer = jiwer.wer(normalise(SPEECH), normalise(result["output_text"]))
    return [
        Figure("word error rate, espeak → whisper-local", wer, "ratio", "<= 0.15"),
        Figure("text-to-speech request (espeak)", tts_ms, "ms"),
        Figure("speech-to-text request (whisper-local)", stt_ms, "ms"),
    ]


def _rendered_lines(lines: tuple[str, ...]) -> bytes:
    """The lines drawn with Pillow's bundled scalable font: the same pixels on every run."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=28)
    height = 48
    width = max(int(font.getlength(line)) for line in lines) + 40
    image = Image.new("RGB", (width, height * len(lines) + 20), "white")
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((20, 10 + index * height), line, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def ocr(server: GoldenServer) -> list[Figure]:
    import jiwer

    from bench.speech_quality import normalise

    image = _upload(server, "golden.png", _rendered_lines(OCR_LINES), "image/png")
    _, result, took = _request(server, modality="vision_analysis", input_artifact_id=image,
                               provider="tesseract")
    expected = normalise(" ".join(OCR_LINES))
    read = normalise(result["output_data"]["text"])
    return [
        Figure("character accuracy, tesseract on a rendered image", 1 - jiwer.cer(expected, read),
               "ratio", ">= 0.95"),
        Figure("vision request (tesseract)", took, "ms"),
    ]


# --- outcomes ----------------------------------------------------------------------------

# (metric, values oldest first, window) → (direction, change_pct): worked out by hand from
# DESIGN §5.3 (first len // 2 values previous, the rest current; lower is better for latency
# and cost; ratio = delta / |previous|; ±5 % is stable).
TREND_CASES = {
    "decline": ("success_rate", [0.9, 0.9, 0.9, 0.9, 0.5, 0.5, 0.5, 0.5], 20,
                ("declining", -44.444444)),
    "faster": ("latency_ms", [200, 200, 100, 100], 20, ("improving", 50.0)),
    "flat": ("quality_score", [8.0, 8.2, 8.1, 8.1], 20, ("stable", 0.0)),
    "odd": ("cost_usd", [0.10, 0.10, 0.10, 0.12, 0.12], 20, ("declining", -13.333333)),
    "within": ("success_rate", [0.80, 0.80, 0.83, 0.83], 20, ("stable", 3.75)),
    "single": ("quality_score", [7.0], 20, ("stable", 0.0)),
    "window": ("success_rate", [0.1] * 10 + [0.5, 0.5, 0.6, 0.6], 4, ("improving", 20.0)),
}


def _events(domain: str, metric: str, values: list[float]) -> list[dict]:
    return [{"domain": domain, "event_type": "golden", "metric_type": metric, "value": value,
             "occurred_at": (T0 + timedelta(minutes=n)).isoformat()}
            for n, value in enumerate(values)]


def trend_maths(server: GoldenServer) -> list[Figure]:
    events = []
    for case, (metric, values, _, _) in TREND_CASES.items():
        events += _events(f"golden.trend.{case}", metric, values)
    expect(server.tenant.post("/v1/outcomes/events/bulk", json={"events": events}), 201)
    wrong = []
    for case, (metric, _, window, (direction, change_pct)) in TREND_CASES.items():
        trend = expect(server.tenant.get(
            f"/v1/outcomes/trends/{metric}",
            params={"domain": f"golden.trend.{case}", "window": window}), 200)
        got = (trend["direction"], round(trend["change_pct"], 6))
        if got != (direction, change_pct):
            wrong.append(f"{case}: {got} instead of {(direction, change_pct)}")
    assert not wrong, "; ".join(wrong)
    return [Figure("golden series with the expected direction and change_pct",
                   len(TREND_CASES), "series", f"== {len(TREND_CASES)}")]


def _decline_intakes(server: GoldenServer, domain: str) -> list[dict]:
    listed = expect(server.tenant.get("/v1/operations/improvements",
                                      params={"source": "outcomes", "limit": 100}), 200)
    return [intake for intake in listed if intake["title"].endswith(f" in {domain}")]


def decline_opens_one_intake(server: GoldenServer) -> list[Figure]:
    domain = "golden.decline"
    values = [0.9, 0.92, 0.9, 0.91, 0.6, 0.55, 0.5, 0.5, 0.45, 0.4]
    took = []
    for n, event in enumerate(_events(domain, "success_rate", values)):
        response, ms = _timed(lambda e=event: server.tenant.post("/v1/outcomes/events", json=e))
        expect(response, 201)
        took.append(ms)
        if n == 3:
            assert not _decline_intakes(server, domain), "an intake opened before any decline"
    intakes = _decline_intakes(server, domain)
    titles = [intake["title"] for intake in intakes]
    assert titles == [f"success_rate declining in {domain}"], f"intakes: {titles}"
    return [Figure("improvement intakes opened by the decline", len(intakes), "intakes", "== 1"),
            Figure("event POST p50", statistics.median(took), "ms")]


def hub_control_round_trip(server: GoldenServer) -> list[Figure]:
    run = expect(server.tenant.post("/v1/operations/workflow-runs",
                                    json={"workflow_name": "golden", "status": "running"}), 201)
    path = f"/v1/operations/processes/{run['id']}"
    took = []
    for action, after in (("pause", "paused"), ("resume", "running")):
        response, ms = _timed(lambda a=action: server.tenant.post(
            f"{path}/control", json={"action": a, "reason": f"golden {a}"}))
        body = expect(response, 200)
        assert body["status"] == after, f"{action}: status {body['status']}, expected {after}"
        took.append(ms)
    history = expect(server.tenant.get(path), 200)["history"][::-1]  # newest first
    audit = [(h["action"], h["reason"], h["state_before"], h["state_after"]) for h in history]
    assert audit == [("pause", "golden pause", "running", "paused"),
                     ("resume", "golden resume", "paused", "running")], f"history: {audit}"
    assert all(h["actor"] for h in history), "an audit row without its actor"
    hub = expect(server.tenant.get("/v1/operations/hub", params={"include": "workflows"}), 200)
    listed = {p["id"]: p["status"] for p in hub["processes"]}
    assert listed.get(run["id"]) == "running", "the hub does not show the run as running"
    return [Figure("audit rows for two controls", len(history), "rows", "== 2"),
            Figure("control request p50", statistics.median(took), "ms")]


def bulk_ingest(server: GoldenServer) -> list[Figure]:
    count = 10_000
    domain = "golden.bulk"
    metrics = ("success_rate", "quality_score", "latency_ms", "cost_usd")
    events = [{"domain": domain, "event_type": f"task-{n % 7}", "metric_type": metrics[n % 4],
               "value": (n % 100) / 100,
               "occurred_at": (T0 + timedelta(seconds=n)).isoformat()} for n in range(count)]
    body = json.dumps({"events": events}).encode()
    response, took = _timed(lambda: server.tenant.post(
        "/v1/outcomes/events/bulk", content=body, headers={"Content-Type": "application/json"}))
    assert expect(response, 201) == {"created": count}, response.text[:200]
    summary = expect(server.tenant.get("/v1/outcomes/dashboard", params={"domain": domain}),
                     200)["summary"]
    return [Figure("events stored and counted", summary["total_events"], "events",
                   f"== {count}"),
            Figure("one bulk request of 10,000 events", took, "ms", "<= 5000")]


# --- cloud providers' wire formats against loopback fakes --------------------------------


def _aim(server: GoldenServer, provider: str, path: str, **settings) -> None:
    """The tenant stores its key; the operator aims the provider at the loopback fake."""
    keys = f"/v1/multimodal/tenants/{TENANT}/providers/{provider}"
    expect(server.tenant.put(keys, json={"api_key": PROVIDER_KEY, **settings}), 200)
    expect(server.operator.put(keys, json={"base_url": server.fakes.url_for(path)}), 200)


def _wav(seconds: float, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\x01\x00" * int(seconds * rate))
    return buffer.getvalue()


def _png() -> bytes:
    return _rendered_lines(("golden",))


def openai_speech_to_text(server: GoldenServer) -> list[Figure]:
    server.fakes.clear()
    _aim(server, "openai", "/v1")
    received = provider_fakes.openai_transcription(server.fakes, text="the golden transcript")
    audio = _wav(0.5, 16000)
    _, result, took = _request(server, modality="speech_to_text", provider="openai",
                               input_artifact_base64=base64.b64encode(audio).decode())
    sent = received.last
    return [_checks({
        "one request": len(received.requests) == 1,
        "bearer key": sent["authorization"] == f"Bearer {PROVIDER_KEY}",
        "model whisper-1": sent["model"] == "whisper-1",
        "json response format": sent["response_format"] == "json",
        "audio bytes": sent["audio"] == audio,
        "transcript returned": result["output_text"] == "the golden transcript",
    }), Figure("request through the API", took, "ms")]


def openai_text_to_speech(server: GoldenServer) -> list[Figure]:
    server.fakes.clear()
    _aim(server, "openai", "/v1")
    audio = _wav(0.25, 24000)
    received = provider_fakes.openai_speech(server.fakes, audio=audio)
    _, result, took = _request(server, modality="text_to_speech", provider="openai",
                               input_text="Golden speech")
    sent = received.last
    return [_checks({
        "one request": len(received.requests) == 1,
        "bearer key": sent["authorization"] == f"Bearer {PROVIDER_KEY}",
        "JSON body": sent["json"] == {"model": "tts-1", "input": "Golden speech",
                                      "voice": "alloy", "response_format": "wav"},
        "audio stored": _artifact(server, result["output_artifact_id"]) == audio,
    }), Figure("request through the API", took, "ms")]


def openai_vision(server: GoldenServer) -> list[Figure]:
    server.fakes.clear()
    _aim(server, "openai", "/v1")
    image = _png()
    received = provider_fakes.openai_chat_vision(
        server.fakes, reply="A golden image.",
        usage={"prompt_tokens": 85, "completion_tokens": 4, "total_tokens": 89})
    _, result, took = _request(server, modality="vision_analysis", provider="openai",
                               input_text="What is in it?",
                               input_artifact_base64=base64.b64encode(image).decode())
    sent = received.last
    return [_checks({
        "one request": len(received.requests) == 1,
        "bearer key": sent["authorization"] == f"Bearer {PROVIDER_KEY}",
        "model gpt-4o-mini": sent["model"] == "gpt-4o-mini",
        "prompt": sent["prompt"] == "What is in it?",
        "image data URL": sent["image_prefix"] == "data:image/png;base64",
        "image bytes": sent["image"] == image,
        "answer returned": result["output_text"] == "A golden image.",
        "usage recorded": result["metadata"].get("usage") == {"input_tokens": 85,
                                                              "output_tokens": 4},
        # The seeded gpt-4o-mini price: 85 x $0.15 + 4 x $0.60 per million tokens.
        "cost from the price table": result["metadata"].get("cost_usd") == "0.00001515",
    }), Figure("request through the API", took, "ms")]


def elevenlabs_text_to_speech(server: GoldenServer) -> list[Figure]:
    server.fakes.clear()
    _aim(server, "elevenlabs", "/")
    pcm = b"\x02\x00" * 16000  # one second at 16 kHz
    received = provider_fakes.elevenlabs_speech(server.fakes, pcm=pcm, character_cost=13)
    _, result, took = _request(server, modality="text_to_speech", provider="elevenlabs",
                               input_text="Golden speech")
    sent = received.last
    with wave.open(io.BytesIO(_artifact(server, result["output_artifact_id"]))) as stored:
        frames, rate = stored.getnframes(), stored.getframerate()
    return [_checks({
        "one request": len(received.requests) == 1,
        "xi-api-key": sent["api_key"] == PROVIDER_KEY,
        "output format pcm_16000": sent["output_format"] == "pcm_16000",
        "JSON body": sent["json"] == {"text": "Golden speech",
                                      "model_id": "eleven_multilingual_v2"},
        "PCM stored as WAV": (frames, rate) == (16000, 16000),
        "characters recorded": result["metadata"].get("usage") == {"characters": 13},
        # The seeded eleven_multilingual_v2 price: $0.10 per 1,000 characters.
        "cost from the price table": result["metadata"].get("cost_usd") == "0.0013",
    }), Figure("request through the API", took, "ms")]


def openai_compatible_vision(server: GoldenServer) -> list[Figure]:
    server.fakes.clear()
    _aim(server, "openai-compatible", "/gateway/v1", default_model="llava-13b")
    image = _png()
    received = provider_fakes.openai_chat_vision(server.fakes, reply="Self-hosted answer.",
                                                 prefix="/gateway/v1")
    _, result, took = _request(server, modality="vision_analysis",
                               provider="openai-compatible",
                               input_artifact_base64=base64.b64encode(image).decode())
    sent = received.last
    return [_checks({
        "one request": len(received.requests) == 1,
        "bearer key": sent["authorization"] == f"Bearer {PROVIDER_KEY}",
        "configured model": sent["model"] == "llava-13b",
        "image bytes": sent["image"] == image,
        "answer returned": result["output_text"] == "Self-hosted answer.",
    }), Figure("request through the API", took, "ms")]


TASKS: dict[str, Callable[[GoldenServer], list[Figure]]] = {
    "golden.speech_round_trip": speech_round_trip,
    "golden.ocr": ocr,
    "golden.trend_maths": trend_maths,
    "golden.decline_opens_one_intake": decline_opens_one_intake,
    "golden.hub_control_round_trip": hub_control_round_trip,
    "golden.bulk_ingest_10k": bulk_ingest,
    "golden.provider.openai_stt": openai_speech_to_text,
    "golden.provider.openai_tts": openai_text_to_speech,
    "golden.provider.openai_vision": openai_vision,
    "golden.provider.elevenlabs_tts": elevenlabs_text_to_speech,
    "golden.provider.openai_compatible_vision": openai_compatible_vision,
}
