"""Artifacts: the files requests take as input and the audio providers return.

Every file is sniffed (its bytes, not its name, decide the type), hashed and written through
Django's storage API by `artifact_prepare`, before any transaction or lock (writing 20 MB
must not hold a row lock others wait for); its row is inserted by `artifact_insert` in the
caller's transaction, which also counts it in the tenant's `StorageUsage`. Callers wrap both
in `removed_unless_stored`, so a file whose row does not commit is removed.

Storage quota: an upload or inline input is admitted by one conditional UPDATE,
`stored += size WHERE stored + size <= max_storage_bytes`, so concurrent uploads can never
together pass the policy's quota (413 `storage_quota_exceeded` naming usage and quota).
Provider outputs are counted but not refused: the provider has already been paid for them,
and the next upload meets the quota instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.files.base import ContentFile, File
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agent33.errors import InvalidInput, QuotaExceeded
from agent33.tenancy.models import Tenant

from ..choices import ArtifactOrigin
from ..models import Artifact, MultimodalPolicy, StorageUsage
from ..sniffing import SNIFF_BYTES, describe_accepted, sniff_content_type
from .policy import policy_for

__all__ = [
    "artifact_create",
    "artifact_insert",
    "artifact_prepare",
    "artifact_read",
    "check_artifact_size",
    "removed_unless_stored",
]


def _size_of(content: bytes | File) -> int:
    return len(content) if isinstance(content, bytes | bytearray) else int(content.size or 0)


def _head_and_digest(content: bytes | File) -> tuple[bytes, str]:
    if isinstance(content, bytes | bytearray):
        return bytes(content[:SNIFF_BYTES]), hashlib.sha256(content).hexdigest()
    digest = hashlib.sha256()
    head = b""
    content.seek(0)
    for chunk in content.chunks():
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        digest.update(chunk)
    content.seek(0)
    return head, digest.hexdigest()


def check_artifact_size(size: int, policy: MultimodalPolicy, *, field: str) -> None:
    if size > policy.max_artifact_bytes:
        raise InvalidInput(
            f"{field} is {size} bytes, over the tenant policy's max_artifact_bytes "
            f"({policy.max_artifact_bytes}).",
            code="max_artifact_bytes",
            field=field,
        )


def artifact_create(
    *,
    tenant: Tenant,
    actor: str,
    content: bytes | File,
    origin: str = ArtifactOrigin.UPLOAD,
    policy: MultimodalPolicy | None = None,
    field: str = "file",
) -> Artifact:
    """Store an input file (an upload) for `tenant`: held to the policy's max_artifact_bytes
    and storage quota, and it must be one of the accepted formats."""
    policy = policy or policy_for(tenant)
    check_artifact_size(_size_of(content), policy, field=field)
    artifact = artifact_prepare(tenant_id=tenant.pk, actor=actor, content=content,
                                origin=origin, field=field)
    with removed_unless_stored(artifact), transaction.atomic():
        artifact_insert(artifact, field=field, policy=policy)
    return artifact


def artifact_prepare(*, tenant_id: str, actor: str, content: bytes | File, origin: str,
                     field: str) -> Artifact:
    """Sniff, hash and write a file; return its row, not yet inserted (`artifact_insert`).
    InvalidInput names `field` when the file is empty or of no accepted type."""
    size = _size_of(content)
    if size == 0:
        raise InvalidInput(f"{field} is empty.", code="empty_file", field=field)
    head, sha256 = _head_and_digest(content)
    content_type = sniff_content_type(head)
    if content_type is None:
        raise InvalidInput(
            f"{field} is not a supported file type; send {describe_accepted()}.",
            code="unsupported_content_type",
            field=field,
        )
    artifact = Artifact(
        tenant_id=tenant_id,
        content_type=content_type,
        size_bytes=size,
        sha256=sha256,
        origin=origin,
        created_by=actor,
    )
    body = ContentFile(bytes(content)) if isinstance(content, bytes | bytearray) else content
    # The storage API (not the filesystem) so an S3-compatible backend is only a setting.
    artifact.file.save(f"{artifact.pk}.{artifact.extension}", body, save=False)
    return artifact


@contextmanager
def removed_unless_stored(artifact: Artifact | None) -> Iterator[None]:
    """Remove the prepared file when what follows fails (its row did not commit)."""
    try:
        yield
    except BaseException:
        if artifact is not None:
            artifact.file.delete(save=False)
        raise


def artifact_insert(artifact: Artifact, *, field: str,
                    policy: MultimodalPolicy | None = None) -> None:
    """Insert a prepared artifact's row and count it in the tenant's storage, in the
    caller's transaction. Inputs (uploads, inline) are held to the storage quota; provider
    outputs are counted only. Lock order: this takes the tenant's StorageUsage row (see the
    README's "Lock order")."""
    size = artifact.size_bytes
    if artifact.origin == ArtifactOrigin.OUTPUT:
        _storage_add(artifact.tenant_id, size)
    else:
        quota = (policy or policy_for(Tenant(pk=artifact.tenant_id))).max_storage_bytes
        if not _storage_add(artifact.tenant_id, size, quota=quota):
            stored = (StorageUsage.objects.filter(tenant_id=artifact.tenant_id)
                      .values_list("stored_bytes", flat=True).first() or 0)
            raise QuotaExceeded(
                f"{field}: storing these {size} bytes would pass tenant "
                f"{artifact.tenant_id}'s artifact storage quota: {stored} of {quota} bytes "
                f"are in use. An operator can raise max_storage_bytes in the tenant's policy.",
                code="storage_quota_exceeded", field=field,
            )
    artifact.save(force_insert=True)


def _storage_add(tenant_id: str, size: int, *, quota: int | None = None) -> bool:
    """Count `size` more bytes, within `quota` when given: one conditional UPDATE (the check
    and the write are one step). False when the quota refuses them."""
    for _ in range(2):
        rows = StorageUsage.objects.filter(tenant_id=tenant_id)
        if quota is not None:
            rows = rows.filter(stored_bytes__lte=quota - size)
        if rows.update(stored_bytes=F("stored_bytes") + size, updated_at=timezone.now()):
            return True
        if StorageUsage.objects.filter(tenant_id=tenant_id).exists():
            return False
        # The tenant's first artifact: concurrent first uploads all end up updating one row.
        StorageUsage.objects.bulk_create([StorageUsage(tenant_id=tenant_id)],
                                         ignore_conflicts=True)
    return False


def artifact_read(artifact: Artifact) -> bytes:
    with artifact.file.open("rb") as handle:
        return handle.read()
