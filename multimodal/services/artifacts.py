"""Artifacts: the files requests take as input and the audio providers return.

Every file is sniffed (its bytes, not its name, decide the type), hashed and written through
Django's storage API before its row is inserted; if the insert fails, the file is removed.
"""

from __future__ import annotations

import hashlib

from django.core.files.base import ContentFile, File

from agent33.errors import InvalidInput
from agent33.tenancy.models import Tenant

from ..choices import ArtifactOrigin
from ..models import Artifact, MultimodalPolicy
from ..sniffing import SNIFF_BYTES, describe_accepted, sniff_content_type
from .policy import policy_for

__all__ = ["artifact_create", "artifact_read", "artifact_store", "check_artifact_size"]


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
    """Store an input file (an upload or inline base64) for `tenant`: held to the policy's
    max_artifact_bytes, and it must be one of the accepted formats."""
    check_artifact_size(_size_of(content), policy or policy_for(tenant), field=field)
    return artifact_store(tenant_id=tenant.pk, actor=actor, content=content, origin=origin,
                          field=field)


def artifact_store(*, tenant_id: str, actor: str, content: bytes | File, origin: str,
                   field: str) -> Artifact:
    """Sniff, hash and store a file (provider outputs come here directly: they are checked
    for format, not against the tenant's input limit). InvalidInput names `field` when the
    file is empty or of no accepted type."""
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
    try:
        artifact.save(force_insert=True)
    except Exception:
        artifact.file.delete(save=False)
        raise
    return artifact


def artifact_read(artifact: Artifact) -> bytes:
    with artifact.file.open("rb") as handle:
        return handle.read()
