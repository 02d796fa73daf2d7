"""Fixtures for the multimodal tests: an isolated MEDIA_ROOT and small input files."""

from __future__ import annotations

import base64

import pytest

from tests.factories.multimodal import png_bytes, wav_bytes


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Artifacts go to a fresh directory per test (Django's default storage reads the
    setting on each use)."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = str(root)
    return root


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
