"""A token revoked while a worker is refreshing its remembered copy is never trusted again
(issue 23): the refresh that read the row before the revocation committed must not put it
back in the cache for later requests. Threads interleave deterministically with events."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from rest_framework.exceptions import AuthenticationFailed

from agent33.auth import authentication
from agent33.auth.authentication import token_from_header
from agent33.tenancy.services import token_issue, token_revoke

WAIT = 10  # seconds: only a broken test waits this long


@pytest.mark.django_db(transaction=True)
def test_a_revocation_racing_a_cache_refresh_is_never_undone(tenant_a, settings, tmp_path,
                                                              monkeypatch):
    settings.AGENT33_AUTH_STAMP_DIR = str(tmp_path)  # this test's own generation file
    settings.AGENT33_TOKEN_CACHE_SECONDS = 60  # remembered far longer than the test runs
    issued = token_issue(tenant=tenant_a, scopes=["admin"])
    header = f"Bearer {issued.plaintext}".encode()

    row_read, revoked = threading.Event(), threading.Event()
    refresher: list[threading.Thread] = []
    read_row = authentication._token_row

    def slow_refresh(prefix):
        token = read_row(prefix)
        if threading.current_thread() in refresher:
            row_read.set()  # it read the row while the token was still valid...
            assert revoked.wait(WAIT)  # ...and files it only after the revocation
        return token

    monkeypatch.setattr(authentication, "_token_row", slow_refresh)
    outcome: list[object] = []

    def refresh():
        try:
            outcome.append(token_from_header(header).pk)
        finally:
            connection.close()

    refresher.append(threading.Thread(target=refresh))
    refresher[0].start()
    assert row_read.wait(WAIT)

    token_revoke(token=issued.token)  # commits, then moves the auth generation on
    with pytest.raises(AuthenticationFailed, match="revoked"):
        token_from_header(header)  # a request after the revocation reads the row again
    revoked.set()
    refresher[0].join(WAIT)
    assert outcome == [issued.token.pk]  # the request in flight before the revocation

    # Every later request refuses the token, although the refresh filed its copy last.
    for _ in range(3):
        with pytest.raises(AuthenticationFailed, match="revoked"):
            token_from_header(header)
