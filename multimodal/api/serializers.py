from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agent33.errors import InvalidInput

from .. import provider_keys
from ..choices import Modality
from ..models import (
    MAX_BASE_URL,
    MAX_DAILY_SPEND_LIMIT,
    POLICY_LIMITS,
    Artifact,
    CloudProvider,
    MultimodalPolicy,
    MultimodalRequest,
    MultimodalResult,
    ProviderCredential,
    ProviderPrice,
    validate_base_url,
    validate_modalities,
)
from ..pricing import UNITS, format_usd, parse_usd
from ..services import DEFAULT_TIMEOUT_SECONDS

__all__ = [
    "ArtifactSerializer",
    "ArtifactUploadSerializer",
    "CancelSerializer",
    "PolicySerializer",
    "PolicyUpdateSerializer",
    "PriceSerializer",
    "PriceUpdateSerializer",
    "ProviderKeySerializer",
    "ProviderKeyUpdateSerializer",
    "RequestCreateSerializer",
    "RequestSerializer",
    "ResultSerializer",
    "SpendSerializer",
    "StatsSerializer",
    "UsdField",
]


@extend_schema_field({"type": "string", "format": "decimal", "example": "12.50",
                      "nullable": True})
class UsdField(serializers.Field):
    """US dollars as a decimal string ("12.50", "0.000015"). Input: a plain ASCII decimal
    string or a JSON integer (`parse_usd`), never a JSON float (0.1 is already inexact
    there)."""

    def __init__(self, *, max_decimals: int = 6, maximum=None, **kwargs):
        self.max_decimals = max_decimals
        self.maximum = maximum
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        try:
            amount = parse_usd(data, max_decimals=self.max_decimals)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        if self.maximum is not None and amount > self.maximum:
            raise serializers.ValidationError(f"must be at most {self.maximum}")
        return amount

    def to_representation(self, value):
        return format_usd(value)


MODALITIES_HELP = f"Any of: {', '.join(Modality.values)}."


class ArtifactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Artifact
        fields = ["id", "content_type", "size_bytes", "sha256", "created_at"]
        read_only_fields = fields


class ArtifactUploadSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=False, use_url=False)


class RequestSerializer(serializers.ModelSerializer):
    tenant_id = serializers.CharField(read_only=True)
    input_artifact_id = serializers.SerializerMethodField()
    result_id = serializers.SerializerMethodField()

    class Meta:
        model = MultimodalRequest
        fields = [
            "id",
            "tenant_id",
            "modality",
            "input_text",
            "input_artifact_id",
            "requested_timeout_seconds",
            "requested_by",
            "state",
            "result_id",
            "error_message",
            "provider",
            "options",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_input_artifact_id(self, obj: MultimodalRequest) -> str:
        return obj.input_artifact_id or ""

    def get_result_id(self, obj: MultimodalRequest) -> str:
        # Lists and lookups annotate `result_ref` (selectors.requests_with_result_id);
        # objects that come straight from a service are looked up once.
        if hasattr(obj, "result_ref"):
            return obj.result_ref or ""
        result = obj.result
        return result.pk if result is not None else ""


def _none_to_blank(value: str | None) -> str:
    return value or ""


class RequestCreateSerializer(serializers.Serializer):
    modality = serializers.ChoiceField(choices=Modality.choices)
    input_text = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, default="", trim_whitespace=False
    )
    input_artifact_id = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, default="", max_length=64
    )
    input_artifact_base64 = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, default=""
    )
    requested_timeout_seconds = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        help_text=f"Default {DEFAULT_TIMEOUT_SECONDS} (or the policy's max_timeout_seconds "
        "if lower).",
    )
    requested_by = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, default="", max_length=200
    )
    execute_now = serializers.BooleanField(required=False, default=True)
    provider = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, default="", max_length=64
    )
    options = serializers.DictField(
        required=False, allow_null=True, default=dict,
        help_text="Provider options (voice, model, language, prompt, speed, output format, "
        "...): what the chosen provider accepts for the modality; anything else is a 400 "
        "naming the option (`errors: {\"options.voice\": [...]}`).",
    )

    def validate(self, attrs: dict) -> dict:
        for name in ("input_text", "input_artifact_id", "input_artifact_base64",
                     "requested_by", "provider"):
            attrs[name] = _none_to_blank(attrs.get(name))
        attrs["options"] = attrs.get("options") or {}
        return attrs


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class ResultSerializer(serializers.ModelSerializer):
    request_id = serializers.CharField(read_only=True)
    output_artifact_id = serializers.SerializerMethodField()
    output_data = serializers.JSONField(read_only=True)
    metadata = serializers.JSONField(read_only=True)

    class Meta:
        model = MultimodalResult
        fields = [
            "id",
            "request_id",
            "state",
            "output_text",
            "output_artifact_id",
            "output_data",
            "started_at",
            "completed_at",
            "metadata",
        ]
        read_only_fields = fields

    def get_output_artifact_id(self, obj: MultimodalResult) -> str:
        return obj.output_artifact_id or ""


class PolicySerializer(serializers.ModelSerializer):
    tenant_id = serializers.CharField(read_only=True)
    # CharField children (validated against Modality): a second ChoiceField over the same
    # choices would give the schema two names for one enum.
    allowed_modalities = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text=MODALITIES_HELP
    )
    daily_spend_limit_usd = UsdField(read_only=True, allow_null=True)
    updated_at = serializers.SerializerMethodField()

    class Meta:
        model = MultimodalPolicy
        fields = [
            "tenant_id",
            "max_text_chars",
            "max_artifact_bytes",
            "max_timeout_seconds",
            "allowed_modalities",
            "daily_spend_limit_usd",
            "max_storage_bytes",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_updated_at(self, obj: MultimodalPolicy):
        # null while the defaults apply (nothing has been set yet)
        if obj.is_default:
            return None
        return serializers.DateTimeField().to_representation(obj.updated_at)


class PolicyUpdateSerializer(serializers.Serializer):
    """Any subset of the policy; fields left out keep their current value."""

    max_text_chars = serializers.IntegerField(
        required=False, min_value=1, max_value=POLICY_LIMITS["max_text_chars"]
    )
    max_artifact_bytes = serializers.IntegerField(
        required=False, min_value=1, max_value=POLICY_LIMITS["max_artifact_bytes"]
    )
    max_timeout_seconds = serializers.IntegerField(
        required=False, min_value=1, max_value=POLICY_LIMITS["max_timeout_seconds"]
    )
    allowed_modalities = serializers.ListField(
        required=False, child=serializers.CharField(), allow_empty=True,
        help_text=MODALITIES_HELP,
    )
    max_storage_bytes = serializers.IntegerField(
        required=False, min_value=0, max_value=POLICY_LIMITS["max_storage_bytes"],
        help_text="Bytes of artifacts the tenant may keep stored (default 1 GiB). Only an "
        "operator token raises it (a tenant's token may lower it; raising: 403 "
        "storage_quota_operator_only).",
    )
    daily_spend_limit_usd = UsdField(
        required=False, allow_null=True, maximum=MAX_DAILY_SPEND_LIMIT,
        help_text="USD per UTC day for all multimodal requests, as a plain decimal string "
        "(at most 6 decimal places); null removes the limit. Only an operator token raises "
        "or removes it; a tenant's token may lower it, or set one where there is none.",
    )

    def validate_allowed_modalities(self, value: list[str]) -> list[str]:
        from django.core.exceptions import ValidationError as DjangoValidationError

        try:
            validate_modalities(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return value

    def validate(self, attrs: dict) -> dict:
        if not attrs:
            raise serializers.ValidationError(
                "Send at least one of max_text_chars, max_artifact_bytes, "
                "max_timeout_seconds, allowed_modalities, daily_spend_limit_usd."
            )
        return attrs


class _LastErrorSerializer(serializers.Serializer):
    request_id = serializers.CharField()
    error_message = serializers.CharField()
    at = serializers.DateTimeField(allow_null=True)


class StatsSerializer(serializers.Serializer):
    modality = serializers.ChoiceField(choices=Modality.choices)
    provider = serializers.CharField()
    total = serializers.IntegerField()
    pending = serializers.IntegerField()
    processing = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True)
    p50_latency_ms = serializers.IntegerField(allow_null=True)
    p95_latency_ms = serializers.IntegerField(allow_null=True)
    spend_usd = UsdField(read_only=True, help_text="The known costs of the group's results.")
    unpriced = serializers.IntegerField(
        help_text="Results of the group whose cost is unknown (not in spend_usd).")
    last_errors = _LastErrorSerializer(many=True)


class SpendSerializer(serializers.Serializer):
    """A tenant's spend today (UTC) against its daily limit."""

    tenant_id = serializers.CharField()
    day = serializers.DateField()
    spent_usd = UsdField(read_only=True, help_text="What requests that ended today cost.")
    reserved_usd = UsdField(read_only=True,
                            help_text="Estimates held by requests still running.")
    daily_spend_limit_usd = UsdField(read_only=True, allow_null=True)
    remaining_usd = UsdField(read_only=True, allow_null=True,
                             help_text="limit - spent - reserved (never below 0); null "
                             "without a limit.")
    resets_at = serializers.DateTimeField(help_text="The next 00:00 UTC.")


class PriceSerializer(serializers.ModelSerializer):
    usd_per_unit = serializers.DictField(
        child=serializers.CharField(), read_only=True,
        help_text=f"USD per unit as decimal strings; units: {', '.join(UNITS)}.")

    class Meta:
        model = ProviderPrice
        fields = ["provider", "model", "usd_per_unit", "version", "updated_at"]
        read_only_fields = fields


class PriceUpdateSerializer(serializers.Serializer):
    usd_per_unit = serializers.DictField(
        help_text=f"USD per unit as decimal strings (at most 12 decimal places), e.g. "
        f'{{"characters": "0.000015"}}; units: {", ".join(UNITS)}.')



def _django_validator(validator, *, field: str):
    """Run a Django-style validator inside a DRF field (messages never quote the value). A
    rule with a code of its own (base_url_not_allowed) answers with that code, so clients can
    branch on it; other failures are the usual `invalid` validation error."""

    def run(value: str) -> None:
        try:
            validator(value)
        except DjangoValidationError as exc:
            code = exc.error_list[0].code
            if code and code != "invalid":
                raise InvalidInput(f"{field}: {exc.messages[0]}", code=code,
                                   field=field) from None
            raise serializers.ValidationError(exc.messages) from None

    return run


class ProviderKeySerializer(serializers.ModelSerializer):
    """A stored provider key as the API shows it: never the key, only its last 4 characters."""

    provider = serializers.ChoiceField(choices=CloudProvider.choices, read_only=True)

    class Meta:
        model = ProviderCredential
        fields = ["provider", "key_last4", "base_url", "default_model", "updated_at"]
        read_only_fields = fields


class ProviderKeyUpdateSerializer(serializers.Serializer):
    """PUT body. Fields left out keep their current value; `api_key` is required only when
    the tenant has no key for the provider yet. `base_url` is for operator tokens only (the
    view refuses it from tenant tokens)."""

    api_key = serializers.CharField(
        required=False, write_only=True, trim_whitespace=True,
        style={"input_type": "password"},
        validators=[_django_validator(provider_keys.validate_api_key, field="api_key")],
        help_text=f"{provider_keys.API_KEY_MIN}-{provider_keys.API_KEY_MAX} characters; "
        "stored encrypted, never returned. Required when no key is stored yet.",
    )
    default_model = serializers.CharField(
        required=False, allow_blank=True, allow_null=True,
        validators=[_django_validator(provider_keys.validate_model_name, field="default_model")],
        help_text="A model name for every modality, or per modality: "
        "`text_to_speech=tts-1-hd;vision_analysis=gpt-4o`. Empty: the engine defaults.",
    )
    base_url = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=MAX_BASE_URL,
        validators=[_django_validator(validate_base_url, field="base_url")],
        help_text="Operator tokens only (a tenant token sending it gets 403). http(s), no "
        "credentials, no query. Empty: the platform's base URL, else the provider's API.",
    )

    def validate(self, attrs: dict) -> dict:
        # null means "clear", like "" (None is reserved for "left out" in the service).
        for name in ("default_model", "base_url"):
            if name in attrs and attrs[name] is None:
                attrs[name] = ""
        return attrs
