"""Signals other code listens to without operations importing it.

`statuses_changed` is sent once the transaction of a status change has committed (never for
one that rolled back), once per `apply_status_changes` call, with `changes`: the committed
history rows (`StatusChange`, with their ids, in the order they were applied). The live hub
streams them and alerts are sent from them; listeners must be quick and must not raise (an
error is logged, never undoes the change that already committed).

`processes_created` is sent after commit when processes are created, with `processes`: a list
of `(kind, pk)` pairs (kind as in `operations.transitions.ProcessKind`), so the live hub can
push new rows.

`batch_completed` is sent after commit when a batch of controls finishes (completed,
cancelled or failed), with `batch`: the `operations.models.Batch` row. Alerts send it as the
webhook event `batch.completed`.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["batch_completed", "processes_created", "statuses_changed"]

statuses_changed = Signal()
processes_created = Signal()
batch_completed = Signal()
