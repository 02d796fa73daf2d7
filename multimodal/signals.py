"""Signals other code listens to without multimodal importing it.

`spend_settled` is sent once a transaction that added to a tenant's settled daily spend has
committed (a claim ended with a cost), with `tenant_id` and `day` (the UTC day of the spend
row). Alerts compare the day's spend with the tenant's daily limit from it
(`spend.threshold_crossed`). Listeners must be quick and must not raise (an error is logged).
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["spend_settled"]

spend_settled = Signal()
