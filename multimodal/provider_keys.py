"""Tenants' stored provider keys (DESIGN §5.2): the only code that writes ProviderCredential.

The API and the admin both call these functions, in their tenant scope (a tenant token's
own tenant, an operator's or a staff member's tenants): the tenant-scoped manager refuses to
run without one. Authorisation (who may set `base_url`) is the caller's job: the API refuses
it from tenant tokens, the admin is staff-only.
Nothing here logs, returns or puts into an error message the plaintext key.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agent33.errors import InvalidInput, NotFound
from agent33.tenancy.models import Tenant

from . import encryption
from .choices import Modality
from .models import CloudProvider, ProviderCredential, validate_base_url

__all__ = [
    "API_KEY_MAX",
    "API_KEY_MIN",
    "MODEL_MAX",
    "credential_delete",
    "credential_set",
    "credentials_list",
    "known_provider",
    "model_for",
    "validate_api_key",
    "validate_model_name",
]

logger = logging.getLogger("agent33.multimodal")

API_KEY_MIN = 8  # shorter "keys" are typos; and last4 would give most of one away
API_KEY_MAX = 500
MODEL_MAX = 100


def known_provider(name: str) -> str:
    """`name` if keys can be stored for it; NotFound (the path names no such resource)."""
    if name not in CloudProvider.values:
        raise NotFound(
            f"Unknown provider {name[:64]!r}; keys can be stored for "
            f"{', '.join(sorted(CloudProvider.values))}.",
            code="unknown_provider",
        )
    return name


def validate_api_key(value: str) -> None:
    """Django-style validator. Messages never quote the value."""
    if not isinstance(value, str):
        raise ValidationError("api_key must be a string.")
    if not API_KEY_MIN <= len(value) <= API_KEY_MAX:
        raise ValidationError(
            f"api_key must be {API_KEY_MIN} to {API_KEY_MAX} characters long."
        )
    # It goes into an HTTP header: whitespace or control characters would break the request
    # (or smuggle a header), and are always a copy-paste accident.
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValidationError("api_key must not contain whitespace or control characters.")


def _parse_models(value: str) -> dict[str, str] | str:
    """`default_model` is a model name for every modality the provider serves, or per
    modality: `text_to_speech=tts-1-hd;vision_analysis=gpt-4o` (one OpenAI key serves three
    modalities whose models differ, so one name for all would break two of them)."""
    if "=" not in value:
        return value
    models: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in value.split(";"))):
        modality, sep, model = (x.strip() for x in part.partition("="))
        if not sep or not model:
            raise ValidationError(
                "default_model: write modality=model pairs separated by ';', e.g. "
                "text_to_speech=tts-1-hd;vision_analysis=gpt-4o."
            )
        if modality not in Modality.values:
            raise ValidationError(
                f"default_model: unknown modality {modality[:40]!r}; known: "
                f"{', '.join(Modality.values)}."
            )
        if modality in models:
            raise ValidationError(f"default_model: {modality} is named twice.")
        models[modality] = model
    return models


def validate_model_name(value: str) -> None:
    if len(value) > MODEL_MAX:
        raise ValidationError(f"default_model is longer than {MODEL_MAX} characters.")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValidationError("default_model must not contain whitespace or control characters.")
    _parse_models(value)


def model_for(default_model: str, modality: str) -> str:
    """The model a stored `default_model` names for `modality` ("" = the engine default)."""
    if not default_model:
        return ""
    try:
        parsed = _parse_models(default_model)
    except ValidationError:
        return ""  # validated on the way in; a bad legacy value means "engine default"
    return parsed if isinstance(parsed, str) else parsed.get(modality, "")


def _checked(validator, value: str, field: str) -> None:
    try:
        validator(value)
    except ValidationError as exc:
        code = exc.error_list[0].code or InvalidInput.code
        raise InvalidInput(exc.messages[0], code=code, field=field) from None


def credentials_list(tenant: Tenant) -> list[ProviderCredential]:
    return list(ProviderCredential.objects.filter(tenant=tenant).order_by("provider"))


def credential_set(
    *,
    tenant: Tenant,
    actor: str,
    provider: str,
    api_key: str | None = None,
    default_model: str | None = None,
    base_url: str | None = None,
) -> ProviderCredential:
    """Create or update `tenant`'s credential for `provider`.

    `None` keeps the current value (so a tenant admin replacing its key keeps the base URL an
    operator set, and an operator can point a stored key elsewhere without knowing it); ""
    clears base_url / default_model. A new credential needs an api_key."""
    known_provider(provider)
    if api_key is not None:
        _checked(validate_api_key, api_key, "api_key")
        # Before any write: in production without AGENT33_SECRET_KEYS this is a 503 naming
        # the setting, never a plaintext fallback.
        encryption.require_available()
    if base_url is not None:
        _checked(validate_base_url, base_url, "base_url")
    if default_model is not None:
        _checked(validate_model_name, default_model, "default_model")

    with transaction.atomic():
        credential = (
            ProviderCredential.objects.select_for_update(no_key=True)
            .filter(tenant=tenant, provider=provider)
            .first()
        )
        creating = credential is None
        if creating:
            if api_key is None:
                raise InvalidInput(
                    f"api_key is required: tenant {tenant.pk} has no {provider} key yet.",
                    code="required",
                    field="api_key",
                )
            credential = ProviderCredential(tenant=tenant, provider=provider)
        if api_key is not None:
            credential.set_api_key(api_key)
        if base_url is not None:
            credential.base_url = base_url
        if default_model is not None:
            credential.default_model = default_model
        credential.updated_at = timezone.now()
        credential.updated_by = actor
        try:
            with transaction.atomic():
                credential.save(force_insert=creating)
        except IntegrityError:
            if not creating:
                raise
            # Created concurrently by another caller: update that row instead.
            return credential_set(tenant=tenant, actor=actor, provider=provider,
                                  api_key=api_key, default_model=default_model,
                                  base_url=base_url)
    logger.info(
        "%s key of tenant %s %s by %s", provider, tenant.pk,
        "stored" if creating else "updated", actor,
    )
    return credential


def credential_delete(*, tenant: Tenant, actor: str, provider: str) -> None:
    known_provider(provider)
    deleted, _ = ProviderCredential.objects.filter(tenant=tenant, provider=provider).delete()
    if not deleted:
        raise NotFound(f"Tenant {tenant.pk} has no stored {provider} key.")
    logger.info("%s key of tenant %s deleted by %s", provider, tenant.pk, actor)
