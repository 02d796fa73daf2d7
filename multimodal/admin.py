"""Staff views of multimodal records (DESIGN §6): requests with their result, usage and
cost, players and previews, Execute / Cancel actions through the same services as the API,
editable policies (with today's spend), each tenant's daily spend, and the price table.

Every tenant-owned queryset comes through the tenant-scoped manager (TenantScopedAdmin), so
staff who are not superusers see only their granted tenants' rows, including in filters and
the artifact content view that feeds the players. The price table is the platform's: staff
edit it with the model's change permission (superusers have it).
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.db.models import OuterRef, Subquery
from django.http import FileResponse, Http404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from agent33.api.viewsets import actor_of
from agent33.auth.scopes import MULTIMODAL_WRITE
from agent33.errors import DomainError
from agent33.tenancy.admin_base import (
    ReadOnlyAdminMixin,
    StaffTenantFilter,
    TenantScopedAdmin,
    TenantScopedInline,
    apply_service_to_each,
)
from operations.admin import render_history
from operations.choices import ChangeCause, ChangePath
from operations.transitions import origin_of

from . import encryption, provider_keys, services
from .choices import Modality
from .models import (
    Artifact,
    DailySpend,
    MultimodalPolicy,
    MultimodalRequest,
    MultimodalResult,
    ProviderCredential,
    ProviderPrice,
)
from .pricing import UNITS, utc_day
from .providers.registry import provider_names
from .services.prices import check_price_key, clean_usd_per_unit
from .templatetags.multimodal_money import usd

__all__ = [
    "ArtifactAdmin",
    "DailySpendAdmin",
    "MultimodalPolicyAdmin",
    "MultimodalRequestAdmin",
    "ProviderCredentialAdmin",
    "ProviderPriceAdmin",
]


def pretty_json(value) -> SafeString:
    return format_html("<pre style='margin:0'>{}</pre>", json.dumps(value, indent=2))


def artifact_content_url(artifact_id: str) -> str:
    return reverse("admin:multimodal_artifact_content", args=[artifact_id])


def artifact_preview(artifact: Artifact | None) -> SafeString | str:
    """An audio player for audio, an image for images (served by the admin content view)."""
    if artifact is None:
        return "—"
    url = artifact_content_url(artifact.pk)
    if artifact.is_audio:
        return format_html(
            '<audio controls preload="none" src="{}" data-artifact="{}">'
            '<a href="{}">download</a></audio>',
            url, artifact.pk, url,
        )
    if artifact.is_image:
        return format_html(
            '<a href="{}"><img src="{}" alt="{}" data-artifact="{}" '
            'style="max-width:480px;max-height:320px;border:1px solid #ccc"></a>',
            url, url, artifact.pk, artifact.pk,
        )
    return format_html('<a href="{}">{}</a>', url, artifact.pk)


class MultimodalResultInline(ReadOnlyAdminMixin, TenantScopedInline):
    model = MultimodalResult
    fk_name = "request"
    can_delete = False
    fields = ("id", "state", "output_text", "output_preview", "usage", "cost",
              "price_used", "output_data", "metadata", "latency_ms", "started_at",
              "completed_at")
    readonly_fields = fields

    @admin.display(description="output")
    def output_preview(self, obj: MultimodalResult):
        return artifact_preview(obj.output_artifact)

    @admin.display(description="usage")
    def usage(self, obj: MultimodalResult):
        usage = obj.metadata.get("usage") or {}
        if not usage:
            return "—"
        source = obj.metadata.get("usage_source", "")
        rows = format_html_join("", "<div>{}: {}</div>", sorted(usage.items()))
        return format_html("{}<div class='help'>{}</div>", rows,
                           f"reported by: {source}" if source else "")

    @admin.display(description="cost (USD)")
    def cost(self, obj: MultimodalResult):
        if obj.metadata.get("cost_usd") is None:
            return format_html("unknown<div class='help'>{}</div>",
                               obj.metadata.get("cost_note", ""))
        return f"${obj.metadata['cost_usd']}"

    @admin.display(description="price used")
    def price_used(self, obj: MultimodalResult):
        price = obj.metadata.get("price")
        if not price:
            return "—"
        units = ", ".join(f"${v} per {k}" for k, v in sorted(price["usd_per_unit"].items()))
        return format_html("{}/{}: {} <div class='help'>version {}, set {}</div>",
                           price["provider"], price["model"], units, price["version"],
                           price["updated_at"])

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("output_artifact")


@admin.register(MultimodalRequest)
class MultimodalRequestAdmin(TenantScopedAdmin):
    list_display = ("id", "tenant", "modality", "state", "provider", "requested_by",
                    "cost", "created_at", "finished_at")
    list_select_related = ("tenant",)
    list_filter = (
        "modality",
        "state",
        ("provider", admin.AllValuesFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
        ("finished_at", admin.DateFieldListFilter),
        StaffTenantFilter,
    )
    search_fields = ("id", "input_text", "requested_by", "error_message", "provider")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    inlines = [MultimodalResultInline]
    actions = ["execute_requests", "cancel_requests"]
    fields = (
        "id", "tenant", "modality", "state", "provider", "input_text", "input_artifact",
        "input_preview", "requested_timeout_seconds", "requested_by", "error_message",
        "options_shown", "attempts", "claimed_at", "started_at", "deadline_at", "finished_at",
        "spend_day", "estimated_usage_shown", "reserved", "created_by", "cancelled_by",
        "cancel_reason", "created_at", "updated_at", "history",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False  # requests are created through the API

    def has_delete_permission(self, request, obj=None):
        return False  # requests and results are the record of what happened

    def get_queryset(self, request):
        # The result's cost beside each row, from one subquery (no query per row).
        cost = MultimodalResult.objects.filter(tenant_id=OuterRef("tenant_id"),
                                               request_id=OuterRef("pk")).values("cost_nano_usd")
        return super().get_queryset(request).select_related("input_artifact").annotate(
            result_cost=Subquery(cost[:1]))

    @admin.display(description="cost", ordering="result_cost")
    def cost(self, obj: MultimodalRequest) -> str:
        return usd(getattr(obj, "result_cost", None))

    @admin.display(description="history")
    def history(self, obj: MultimodalRequest):
        return render_history(obj.tenant_id, obj.pk)

    @admin.display(description="options")
    def options_shown(self, obj: MultimodalRequest):
        return pretty_json(obj.options) if obj.options else "—"

    @admin.display(description="estimated usage")
    def estimated_usage_shown(self, obj: MultimodalRequest):
        return pretty_json(obj.estimated_usage) if obj.estimated_usage else "—"

    @admin.display(description="reserved against the daily limit")
    def reserved(self, obj: MultimodalRequest) -> str:
        return usd(obj.reserved_nano_usd) if obj.spend_day else "—"

    @admin.display(description="input preview")
    def input_preview(self, obj: MultimodalRequest):
        return artifact_preview(obj.input_artifact)

    @staticmethod
    def _origin(request):
        # The actions' `change` permission is checked by the admin before they run: it is
        # the staff member's right to execute and cancel requests.
        return origin_of(request, path=ChangePath.ADMIN, cause=ChangeCause.OPERATOR,
                         staff_scopes=(MULTIMODAL_WRITE,))

    @admin.action(description="Execute selected requests", permissions=["change"])
    def execute_requests(self, request, queryset):
        origin = self._origin(request)
        apply_service_to_each(
            self, request, queryset,
            lambda mm_request: services.request_execute(mm_request=mm_request, origin=origin),
            done_message="Executed: {count} request(s).",
        )

    @admin.action(description="Cancel selected requests", permissions=["change"])
    def cancel_requests(self, request, queryset):
        origin = self._origin(request)
        apply_service_to_each(
            self, request, queryset,
            lambda mm_request: services.request_cancel(mm_request=mm_request, origin=origin,
                                                       reason="cancelled in the admin"),
            done_message="Cancelled: {count} request(s).",
        )


@admin.register(Artifact)
class ArtifactAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ("id", "tenant", "content_type", "size_bytes", "origin", "created_at")
    list_select_related = ("tenant",)
    list_filter = ("content_type", "origin", ("created_at", admin.DateFieldListFilter),
                   StaffTenantFilter)
    search_fields = ("id", "sha256")
    ordering = ("-created_at",)
    fields = ("id", "tenant", "content_type", "size_bytes", "sha256", "origin", "preview",
              "created_by", "created_at")
    readonly_fields = fields

    @admin.display(description="preview")
    def preview(self, obj: Artifact):
        return artifact_preview(obj)

    def get_urls(self):
        content = path(
            "<str:object_id>/content/",
            self.admin_site.admin_view(self.content_view),
            name="multimodal_artifact_content",
        )
        return [content, *super().get_urls()]

    def content_view(self, request, object_id: str):
        """The bytes, for the players and previews; tenant-limited like every admin page."""
        if not self.has_view_permission(request):
            raise Http404
        artifact = self.get_queryset(request).filter(pk=object_id).first()
        if artifact is None:
            raise Http404
        try:
            handle = artifact.file.open("rb")
        except OSError:
            raise Http404 from None
        response = FileResponse(handle, content_type=artifact.content_type,
                                filename=f"{artifact.pk}.{artifact.extension}")
        response["Cache-Control"] = "private, max-age=300"
        return response


class PolicyForm(forms.ModelForm):
    allowed_modalities = forms.MultipleChoiceField(
        choices=Modality.choices, widget=forms.CheckboxSelectMultiple, required=False
    )

    class Meta:
        model = MultimodalPolicy
        fields = ("tenant", "max_text_chars", "max_artifact_bytes", "max_timeout_seconds",
                  "allowed_modalities", "daily_spend_limit_usd")


def _today_spend(field: str) -> Subquery:
    return Subquery(DailySpend.objects.filter(
        tenant_id=OuterRef("tenant_id"), day=utc_day(timezone.now())).values(field)[:1])


@admin.register(MultimodalPolicy)
class MultimodalPolicyAdmin(TenantScopedAdmin):
    form = PolicyForm
    list_display = ("tenant", "max_text_chars", "max_artifact_bytes", "max_timeout_seconds",
                    "modalities", "limit", "spent_today", "updated_at", "updated_by")
    list_select_related = ("tenant",)
    readonly_fields = ("spent_today", "updated_at", "updated_by")

    def get_readonly_fields(self, request, obj=None):
        return ("tenant", *self.readonly_fields) if obj else self.readonly_fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            today_settled=_today_spend("settled_nano_usd"),
            today_reserved=_today_spend("reserved_nano_usd"))

    @admin.display(description="allowed modalities")
    def modalities(self, obj: MultimodalPolicy) -> str:
        return ", ".join(obj.allowed_modalities) or "none"

    @admin.display(description="daily spend limit", ordering="daily_spend_limit_usd")
    def limit(self, obj: MultimodalPolicy) -> str:
        return usd(obj.daily_spend_limit_usd) if obj.daily_spend_limit_usd is not None \
            else "no limit"

    @admin.display(description="spent today (UTC)")
    def spent_today(self, obj: MultimodalPolicy) -> str:
        settled = getattr(obj, "today_settled", None)
        reserved = getattr(obj, "today_reserved", None)
        if settled is None and obj.pk:  # the change page reads the object without annotation
            row = DailySpend.objects.filter(tenant_id=obj.tenant_id,
                                            day=utc_day(timezone.now())).first()
            settled, reserved = (row.settled_nano_usd, row.reserved_nano_usd) if row else (0, 0)
        text = usd(settled or 0)
        return f"{text} (+{usd(reserved)} reserved)" if reserved else text

    def save_model(self, request, obj, form, change):
        # The same service as the API (locking, validation, audit fields).
        saved = services.policy_set(
            tenant=obj.tenant,
            actor=actor_of(request),
            values={name: getattr(obj, name) for name in services.POLICY_FIELDS},
        )
        obj.pk = saved.pk
        obj.updated_at, obj.updated_by = saved.updated_at, saved.updated_by
        obj._state.adding = False


class ProviderCredentialForm(forms.ModelForm):
    """The key is a write-only field: never rendered back (not even after a failed submit),
    required when adding, left blank to keep the stored key when changing."""

    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        validators=[provider_keys.validate_api_key],
        help_text="Stored encrypted; never shown again. Leave blank to keep the stored key.",
    )

    class Meta:
        model = ProviderCredential
        fields = ("tenant", "provider", "api_key", "base_url", "default_model")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["default_model"].validators.append(provider_keys.validate_model_name)
        self.fields["default_model"].help_text = (
            "A model name for every modality, or per modality: "
            "text_to_speech=tts-1-hd;vision_analysis=gpt-4o. Empty: the engine defaults."
        )

    def clean_api_key(self) -> str:
        value = self.cleaned_data.get("api_key", "")
        if not value and self.instance._state.adding:
            raise forms.ValidationError("An API key is required for a new credential.")
        if value:
            try:
                encryption.require_available()
            except encryption.EncryptionUnavailable as exc:
                raise forms.ValidationError(exc.detail) from None
        return value


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(TenantScopedAdmin):
    """Staff set a tenant's key, its base URL (staff may aim it anywhere; tenants may not)
    and default model. Pages show the last four characters of the key, never more."""

    form = ProviderCredentialForm
    list_display = ("tenant", "provider", "masked_key", "base_url", "default_model",
                    "updated_at", "updated_by")
    list_select_related = ("tenant",)
    list_filter = ("provider", StaffTenantFilter)
    search_fields = ("tenant__slug", "tenant__name", "provider", "base_url", "default_model")
    ordering = ("tenant", "provider")
    readonly_fields = ("masked_key", "updated_at", "updated_by")

    def get_readonly_fields(self, request, obj=None):
        # Tenant and provider identify the credential; to move a key, add a new one.
        return ("tenant", "provider", *self.readonly_fields) if obj else self.readonly_fields

    def get_fields(self, request, obj=None):
        fields = ["tenant", "provider", "masked_key", "api_key", "base_url", "default_model"]
        return [*fields, "updated_at", "updated_by"] if obj else fields

    @admin.display(description="key", ordering="key_last4")
    def masked_key(self, obj: ProviderCredential) -> str:
        return f"…{obj.key_last4}" if obj and obj.key_last4 else "—"

    def save_model(self, request, obj, form, change):
        # The same service as the API (validation, encryption, audit fields, locking).
        saved = provider_keys.credential_set(
            tenant=obj.tenant,
            actor=actor_of(request),
            provider=obj.provider,
            api_key=form.cleaned_data.get("api_key") or None,
            base_url=obj.base_url,
            default_model=obj.default_model,
        )
        obj.pk = saved.pk
        obj.api_key_encrypted, obj.key_last4 = saved.api_key_encrypted, saved.key_last4
        obj.updated_at, obj.updated_by = saved.updated_at, saved.updated_by
        obj._state.adding = False


@admin.register(DailySpend)
class DailySpendAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    """Each tenant's spend per UTC day: what ended requests cost and what running ones hold."""

    list_display = ("tenant", "day", "spent", "reserved", "limit", "updated_at")
    list_select_related = ("tenant",)
    list_filter = (("day", admin.DateFieldListFilter), StaffTenantFilter)
    date_hierarchy = "day"
    ordering = ("-day", "-settled_nano_usd")
    fields = ("tenant", "day", "spent", "reserved", "limit", "updated_at")
    readonly_fields = fields

    def get_queryset(self, request):
        limit = MultimodalPolicy.objects.filter(tenant_id=OuterRef("tenant_id"))
        return super().get_queryset(request).annotate(
            limit_usd=Subquery(limit.values("daily_spend_limit_usd")[:1]))

    @admin.display(description="spent", ordering="settled_nano_usd")
    def spent(self, obj: DailySpend) -> str:
        return usd(obj.settled_nano_usd)

    @admin.display(description="reserved by running requests", ordering="reserved_nano_usd")
    def reserved(self, obj: DailySpend) -> str:
        return usd(obj.reserved_nano_usd)

    @admin.display(description="daily limit (today's policy)")
    def limit(self, obj: DailySpend) -> str:
        value = getattr(obj, "limit_usd", None)
        return usd(value) if value is not None else "no limit"


class _ProviderPriceForm(forms.ModelForm):
    """One field per unit (blank: not priced), saved through the API's service."""

    class Meta:
        model = ProviderPrice
        fields = ("provider", "model")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "provider" in self.fields:  # adding: pick one of the engines
            self.fields["provider"] = forms.ChoiceField(
                choices=[(name, name) for name in provider_names()])
        for unit, price in (self.instance.usd_per_unit or {}).items():
            if unit in UNITS:
                self.fields[f"usd_per_{unit}"].initial = price

    def usd_per_unit(self) -> dict[str, str]:
        return {unit: self.cleaned_data[f"usd_per_{unit}"].strip() for unit in UNITS
                if self.cleaned_data.get(f"usd_per_{unit}", "").strip()}

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk:
            try:
                check_price_key(cleaned.get("provider", ""), cleaned.get("model", ""))
            except DomainError as exc:
                self.add_error("model" if exc.field == "model" else "provider", exc.detail)
        try:
            clean_usd_per_unit(self.usd_per_unit())
        except DomainError as exc:
            for field, messages in (exc.errors or {exc.field or "__all__": [exc.detail]}).items():
                unit = field.removeprefix("usd_per_unit.")
                target = f"usd_per_{unit}" if unit in UNITS else None
                self.add_error(target, messages)
        return cleaned


# The unit fields are declared on the class (the admin builds its form from declared fields).
ProviderPriceForm = type("ProviderPriceForm", (_ProviderPriceForm,), {
    f"usd_per_{unit}": forms.CharField(label=f"USD per {unit.replace('_', ' ')}",
                                       required=False, help_text=meaning)
    for unit, meaning in UNITS.items()
})


@admin.register(ProviderPrice)
class ProviderPriceAdmin(admin.ModelAdmin):
    """The platform's prices: changing one costs requests from then on; results keep the
    price (and its version) they were costed with."""

    form = ProviderPriceForm
    list_display = ("provider", "model", "prices", "version", "updated_at", "updated_by")
    list_filter = ("provider",)
    search_fields = ("provider", "model")
    ordering = ("provider", "model")
    readonly_fields = ("version", "updated_at", "updated_by")

    def get_readonly_fields(self, request, obj=None):
        # Provider and model name the price; a different model is a new row.
        return ("provider", "model", *self.readonly_fields) if obj else self.readonly_fields

    @admin.display(description="USD per unit")
    def prices(self, obj: ProviderPrice) -> str:
        return ", ".join(f"${v} per {k}" for k, v in sorted(obj.usd_per_unit.items())) or "—"

    def save_model(self, request, obj, form, change):
        # The same service as the API (validation, version, audit fields); the form has
        # already checked what it checks.
        saved = services.price_set(provider=obj.provider, model=obj.model,
                                   usd_per_unit=form.usd_per_unit(), actor=actor_of(request))
        obj.pk, obj.usd_per_unit, obj.version = saved.pk, saved.usd_per_unit, saved.version
        obj.updated_at, obj.updated_by = saved.updated_at, saved.updated_by
        obj._state.adding = False
