"""Every write in the multimodal app, by concern:

- `policy`: a tenant's limits (read, set);
- `artifacts`: input and output files (sniffed, hashed, stored);
- `requests`: create, execute, cancel, and `request_end`, the one place a request ends
  (with its result row and `request_ended`'s outcome events, in one commit);
- `execution`: one attempt of a claimed request (the task's body), the reaper, and the
  broker-refused path.

The API, the admin, the hub, commands and tasks call these through this package
(`from multimodal.services import request_cancel`). They read and write through the
tenant-scoped managers: API traffic brings its scope from authentication, the admin from
the staff member, and tasks and the reaper set one around each request's work.
"""

from __future__ import annotations

from .artifacts import artifact_create, artifact_read
from .execution import reap_timeouts, request_fail_unqueued, request_run, timeout_message
from .policy import POLICY_FIELDS, policy_for, policy_set
from .requests import (
    DEFAULT_TIMEOUT_SECONDS,
    request_cancel,
    request_create,
    request_ended,
    request_execute,
)

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "POLICY_FIELDS",
    "artifact_create",
    "artifact_read",
    "policy_for",
    "policy_set",
    "reap_timeouts",
    "request_cancel",
    "request_create",
    "request_ended",
    "request_execute",
    "request_fail_unqueued",
    "request_run",
    "timeout_message",
]
