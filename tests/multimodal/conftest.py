"""Fixtures for the multimodal tests: an isolated MEDIA_ROOT and small input files."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.factories.multimodal import png_bytes, wav_bytes


@pytest.fixture
def media_root(settings) -> Path:
    """This test's artifact folder (tests/conftest.py points MEDIA_ROOT at a fresh one)."""
    return Path(settings.MEDIA_ROOT)


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    """A real HTTP server on 127.0.0.1 standing in for a cloud provider. Threaded, so a handler
    that deliberately hangs does not stall the server for others."""
    srv = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    srv.start()
    yield srv
    srv.clear()
    if srv.is_running():
        srv.stop()


@pytest.fixture
def wav():
    return wav_bytes()


@pytest.fixture
def png():
    return png_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Staff logins in the admin tests: a million PBKDF2 rounds per login buys nothing here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# A fixed Fernet key for stored provider keys (tests that need rotation set their own), and
# no platform cloud keys from the developer's environment: without this, an exported
# OPENAI_API_KEY would turn every offline-engine test into a call to OpenAI.
TEST_SECRET_KEY = "mI1Kq3m2V2ueoGQf0GQmIjgXW2yh4pcyNgMjYr3m8V8="


@pytest.fixture(autouse=True)
def provider_settings(settings):
    settings.AGENT33_SECRET_KEYS = [TEST_SECRET_KEY]
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ELEVENLABS_API_KEY",
                 "ELEVENLABS_BASE_URL", "OPENAI_COMPATIBLE_API_KEY",
                 "OPENAI_COMPATIBLE_BASE_URL"):
        setattr(settings, name, "")
    settings.MULTIMODAL_DEFAULT_PROVIDERS = {}
    return settings
