# ruff: noqa: S608 -- table and channel names are this module's constants, never input
"""The live hub's change log (DESIGN §8.4): every process created or status changed, of every
process type, becomes one `ProcessEvent` row in the transaction of the change.

- Status changes: `operations.transitions.apply_status_changes` calls `record()` next to its
  history rows (the one place a status changes).
- Creations: a `post_save` receiver for every registered process kind (`created=True`), so
  every path that makes a process (the services, the admin, fixtures, factories, the demo)
  logs it; the creating services run in one transaction, so the row commits with the
  process or not at all. `processes_created` is sent after commit.

The event id (`seq`) is given at commit, in commit order, by a trigger installed after every
`migrate` (`install_changelog_trigger`): on PostgreSQL a DEFERRABLE INITIALLY DEFERRED
constraint trigger that runs at COMMIT, takes one transaction-scoped advisory lock (so the
ids are handed out and become visible in the same order), numbers the row and sends
`NOTIFY agent33_hub, '<row id>'` (delivered when the transaction commits, never for one that
rolls back). Because the lock is taken at COMMIT, after every other lock the transaction
holds, it cannot join a lock cycle. SQLite runs one writer at a time: an insert trigger
copies the row id. With `REDIS_URL`, the row ids are also published on the Redis channel
after commit (the scaled-out fan-out, `operations.stream`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import connections, models, transaction
from django.db.models import Max
from django.db.models.signals import post_migrate, post_save
from django.utils import timezone

from .models import ProcessEvent
from .signals import processes_created

logger = logging.getLogger("agent33.operations")

__all__ = [
    "CHANNEL",
    "install_changelog_trigger",
    "prune_events",
    "record",
    "redis_url",
]

CHANNEL = "agent33_hub"
# Any constant: the one advisory lock that orders the log's commits.
_ADVISORY_KEY = 0x61676833  # "agh3"


def redis_url() -> str | None:
    """The Redis of the shared cache, when the deployment has one (REDIS_URL)."""
    cache = settings.CACHES.get("default", {})
    if cache.get("BACKEND", "").endswith("RedisCache"):
        location = cache.get("LOCATION")
        return location[0] if isinstance(location, (list, tuple)) else location
    return None


def record(type_name: str, entries: Iterable[tuple[str, str, str, str]]) -> list[ProcessEvent]:
    """Log changes in the current transaction: `entries` are (tenant_id, process_id,
    state_before, state_after), state_before "" for a creation."""
    now = timezone.now()
    rows = [
        ProcessEvent(tenant_id=tenant_id, process_type=type_name, process_id=pk,
                     state_before=before, state_after=after, created_at=now)
        for tenant_id, pk, before, after in entries
    ]
    if not rows:
        return rows
    ProcessEvent.all_tenants.bulk_create(rows)
    url = redis_url()
    if url is not None and rows[0].pk is not None:
        transaction.on_commit(partial(_publish, url, [row.pk for row in rows]))
    elif connections[ProcessEvent.objects.db].vendor == "sqlite":
        transaction.on_commit(_wake_local_broker)
    return rows


def _wake_local_broker() -> None:
    from .stream import broker

    broker().wake()


def _publish(url: str, ids: list[int]) -> None:
    """After commit: tell every server process on Redis which log rows to read (ids only).
    A lost publish delays nothing for long: a reconnecting client catches up from the log."""
    from .stream import redis_client

    try:
        redis_client(url).publish(CHANNEL, ",".join(map(str, ids)))
    except Exception:
        logger.warning("could not publish hub events %s to Redis", ids[:5], exc_info=True)


def _created(sender: type[models.Model], instance: models.Model, created: bool,
             raw: bool = False, **kwargs) -> None:
    if not created or raw:
        return
    from .transitions import registered_kind

    kind = registered_kind(sender)
    if kind is None:
        return
    status = getattr(instance, kind.status_field)
    record(kind.type_name, [(instance.tenant_id, instance.pk, "", status)])
    pair = (kind.type_name, instance.pk)
    transaction.on_commit(partial(_announce_created, sender, pair))


def _announce_created(model: type[models.Model], pair: tuple[str, str]) -> None:
    for receiver, error in processes_created.send_robust(sender=model, processes=[pair]):
        if error is not None:
            logger.error("processes_created listener %r failed", receiver, exc_info=error)


post_save.connect(_created, dispatch_uid="operations_changelog_created")


def prune_events(*, now=None) -> int:
    """Remove log rows older than what catch-up may replay (AGENT33_HUB_STREAM_KEEP_SECONDS,
    10 minutes by default); the schedule runs it every minute. The newest row stays,
    however old: it holds the last id given, so a client that saw it is up to date (not
    reset) after a quiet spell."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.AGENT33_HUB_STREAM_KEEP_SECONDS)
    newest = ProcessEvent.all_tenants.aggregate(top=Max("seq"))["top"]
    if newest is None:
        return 0
    deleted, _ = ProcessEvent.all_tenants.filter(created_at__lt=cutoff, seq__lt=newest).delete()
    return deleted


# --- the commit-order trigger -------------------------------------------------------------

_TABLE = ProcessEvent._meta.db_table


def _postgres_statements() -> list[str]:
    return [
        f"CREATE SEQUENCE IF NOT EXISTS {_TABLE}_commit_seq",
        f"""CREATE OR REPLACE FUNCTION {_TABLE}_at_commit() RETURNS trigger AS $$
BEGIN
    -- At COMMIT, after every other lock of the transaction: ids in commit order.
    PERFORM pg_advisory_xact_lock({_ADVISORY_KEY});
    UPDATE {_TABLE} SET seq = nextval('{_TABLE}_commit_seq') WHERE id = NEW.id;
    PERFORM pg_notify('{CHANNEL}', NEW.id::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql""",
        f"DROP TRIGGER IF EXISTS {_TABLE}_at_commit ON {_TABLE}",
        f"""CREATE CONSTRAINT TRIGGER {_TABLE}_at_commit AFTER INSERT ON {_TABLE}
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {_TABLE}_at_commit()""",
    ]


def _sqlite_statements() -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {_TABLE}_seq",
        f"""CREATE TRIGGER {_TABLE}_seq AFTER INSERT ON {_TABLE}
BEGIN UPDATE {_TABLE} SET seq = NEW.id WHERE id = NEW.id; END""",
    ]


def install_changelog_trigger(*, using: str = "default") -> bool:
    """(Re)install the trigger that numbers log rows at commit; False when the table is not
    there (yet) or the database is neither PostgreSQL nor SQLite."""
    conn = connections[using]
    if conn.vendor not in ("postgresql", "sqlite"):
        return False
    if _TABLE not in conn.introspection.table_names():
        return False
    statements = _postgres_statements() if conn.vendor == "postgresql" else _sqlite_statements()
    with transaction.atomic(using=using), conn.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    return True


def _install_after_migrate(sender, using="default", **kwargs) -> None:
    if sender.label == "operations":
        install_changelog_trigger(using=using)


post_migrate.connect(_install_after_migrate, dispatch_uid="operations_changelog_trigger")
