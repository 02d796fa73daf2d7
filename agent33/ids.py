"""Opaque, prefixed, collision-free identifiers (`trace-…`, `mmreq-…`)."""

import secrets

from django.db import models
from django.utils.deconstruct import deconstructible

__all__ = ["PrefixedId", "PrefixedIdField", "new_id"]


def new_id(prefix: str) -> str:
    # 128 random bits: never collides in practice, and reveals nothing about order or volume.
    return f"{prefix}-{secrets.token_hex(16)}"


@deconstructible
class PrefixedId:
    """Field default that migrations can serialise (a closure could not be)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self) -> str:
        return new_id(self.prefix)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrefixedId) and other.prefix == self.prefix

    def __hash__(self) -> int:
        return hash(self.prefix)


class PrefixedIdField(models.CharField):
    """Primary key `<prefix>-<32 hex>`."""

    def __init__(self, prefix: str = "", *args, **kwargs):
        self.prefix = prefix
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("primary_key", True)
        kwargs.setdefault("editable", False)
        if prefix:
            kwargs.setdefault("default", PrefixedId(prefix))
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["prefix"] = self.prefix
        for key in ("max_length", "primary_key", "editable", "default"):
            kwargs.pop(key, None)
        return name, path, args, kwargs
