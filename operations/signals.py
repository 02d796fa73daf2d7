"""Signals other code listens to without operations importing it.

`statuses_changed` is sent once the transaction of a status change has committed (never for
one that rolled back), once per `apply_status_changes` call, with `changes`: the committed
history rows (`StatusChange`, with their ids, in the order they were applied). The live hub
streams them and alerts are sent from them; listeners must be quick and must not raise (an
error is logged, never undoes the change that already committed).
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["statuses_changed"]

statuses_changed = Signal()
