"""The auth generation: one value every worker reads on every request, changed whenever a
token or tenant changes, so a revocation or deactivation applies to the very next request on
every worker and host.

Workers remember tokens they looked up (a database round trip per request would double the
cost of authentication: bench/auth_overhead.py). A remembered token is trusted only while
the generation is the one seen when it was remembered; the revoking process changes the
generation after its transaction commits, so the next request anywhere finds a new value,
forgets every remembered token and reads the database.

Where the generation lives:
- scaled out (a shared cache, REDIS_URL): a key in that cache; one GET per request;
- embedded (one host, no shared cache: SQLite, or PostgreSQL with several gunicorn workers):
  a file whose identity (inode, mtime, size) is the generation; one stat() per request. Its
  name is derived from the database, so every process of one deployment on the host (web
  workers, `manage.py revoke_token`, Celery) agrees on it, and none of another.

Rows edited behind the application's back (psql) change no generation: a worker trusts a
remembered token for at most AGENT33_TOKEN_CACHE_SECONDS.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import uuid
from pathlib import Path

from django.conf import settings
from django.core import checks
from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from agent33.tenancy.models import ApiToken, Tenant

__all__ = ["auth_generation", "bump_auth_generation", "stamp_path"]

CACHE_KEY = "agent33:auth-generation"


def _shared_cache():
    cache = caches["default"]
    return None if isinstance(cache, (LocMemCache, DummyCache)) else cache


def stamp_path() -> Path:
    """The embedded generation file of this deployment's database."""
    db = connection.settings_dict
    identity = f"{db['ENGINE']}|{db.get('HOST') or ''}|{db.get('PORT') or ''}|{db['NAME']}"
    return _stamp_path(identity, settings.AGENT33_AUTH_STAMP_DIR or tempfile.gettempdir())


@functools.lru_cache(maxsize=16)
def _stamp_path(identity: str, directory: str) -> Path:
    # Every request reads the generation: the digest and the path are made once per database
    # and directory, not per request (0.06 ms of a worker's CPU each, bench/ab.py).
    digest = hashlib.sha256(identity.encode()).hexdigest()[:20]
    return Path(directory) / f"agent33-auth-{digest}"


def auth_generation() -> object:
    """The current generation (compare with ==); None before the first change."""
    cache = _shared_cache()
    if cache is not None:
        return cache.get(CACHE_KEY)
    try:
        stat = os.stat(stamp_path())
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _write_generation() -> None:
    cache = _shared_cache()
    if cache is not None:
        cache.set(CACHE_KEY, uuid.uuid4().hex, timeout=None)
        return
    path = stamp_path()
    # A new file moved into place: a new inode, so even two changes within one mtime tick
    # differ, and readers never see a half-written file.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as stamp:
        stamp.write(uuid.uuid4().hex)
    os.replace(temporary, path)


def bump_auth_generation() -> None:
    """Change the generation once the current transaction commits (at once outside one): a
    worker that read the database before the commit may have remembered the old row, and
    only a change after the commit makes it look again."""
    from .authentication import forget_cached_tokens

    forget_cached_tokens()  # this process, at once
    transaction.on_commit(_write_generation, robust=False)


@receiver(post_save, sender=ApiToken)
@receiver(post_save, sender=Tenant)
@receiver(post_delete, sender=ApiToken)
@receiver(post_delete, sender=Tenant)
def _token_or_tenant_changed(sender, created: bool = False, **kwargs) -> None:
    """Every save through the ORM (the admin's tenant page, a deactivation in a shell), in
    every process: this module is imported at start-up (TenancyConfig.ready). A new row
    changes nothing anyone remembered."""
    if not created:
        bump_auth_generation()


@checks.register(checks.Tags.security)
def check_stamp_directory(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Without a shared cache, revocation reaches other workers through a file: a directory
    it cannot be written to would leave them trusting revoked tokens."""
    if _shared_cache() is not None:
        return []
    directory = Path(settings.AGENT33_AUTH_STAMP_DIR or tempfile.gettempdir())
    if not (directory.is_dir() and os.access(directory, os.W_OK | os.X_OK)):
        return [checks.Error(
            f"The auth generation directory {directory} is not a writable directory.",
            hint="Set AGENT33_AUTH_STAMP_DIR to a directory every process of this service "
            "on the host can write, or configure REDIS_URL.",
            id="agent33.E001",
        )]
    return []
