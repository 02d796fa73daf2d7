"""Staff views of multimodal records (DESIGN §6): requests with their result, players and
previews, Execute / Cancel actions through the same services as the API, editable policies.

Every queryset comes through the tenant-scoped manager (TenantScopedAdmin), so staff who are
not superusers see only their granted tenants' rows, including in filters and the artifact
content view that feeds the players.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import FileResponse, Http404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from agent33.api.viewsets import actor_of
from agent33.tenancy.admin_base import (
    ReadOnlyAdminMixin,
    StaffTenantFilter,
    TenantScopedAdmin,
    TenantScopedInline,
    apply_service_to_each,
)

from . import encryption, provider_keys, services
from .choices import Modality
from .models import (
    Artifact,
    MultimodalPolicy,
    MultimodalRequest,
    MultimodalResult,
    ProviderCredential,
)

__all__ = [
    "ArtifactAdmin",
    "MultimodalPolicyAdmin",
    "MultimodalRequestAdmin",
    "ProviderCredentialAdmin",
]


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
    fields = ("id", "state", "output_text", "output_preview", "output_data", "metadata",
              "latency_ms", "started_at", "completed_at")
    readonly_fields = fields

    @admin.display(description="output")
    def output_preview(self, obj: MultimodalResult):
        return artifact_preview(obj.output_artifact)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("output_artifact")


@admin.register(MultimodalRequest)
class MultimodalRequestAdmin(TenantScopedAdmin):
    list_display = ("id", "tenant", "modality", "state", "provider", "requested_by",
                    "created_at", "finished_at")
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
        "attempts", "claimed_at", "started_at", "deadline_at", "finished_at", "created_by",
        "cancelled_by", "cancel_reason", "created_at", "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False  # requests are created through the API

    def has_delete_permission(self, request, obj=None):
        return False  # requests and results are the record of what happened

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("input_artifact")

    @admin.display(description="input preview")
    def input_preview(self, obj: MultimodalRequest):
        return artifact_preview(obj.input_artifact)

    @admin.action(description="Execute selected requests", permissions=["change"])
    def execute_requests(self, request, queryset):
        actor = actor_of(request)
        apply_service_to_each(
            self, request, queryset,
            lambda mm_request: services.request_execute(mm_request=mm_request, actor=actor),
            done_message="Executed: {count} request(s).",
        )

    @admin.action(description="Cancel selected requests", permissions=["change"])
    def cancel_requests(self, request, queryset):
        actor = actor_of(request)
        apply_service_to_each(
            self, request, queryset,
            lambda mm_request: services.request_cancel(mm_request=mm_request, actor=actor,
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
                  "allowed_modalities")


@admin.register(MultimodalPolicy)
class MultimodalPolicyAdmin(TenantScopedAdmin):
    form = PolicyForm
    list_display = ("tenant", "max_text_chars", "max_artifact_bytes", "max_timeout_seconds",
                    "modalities", "updated_at", "updated_by")
    list_select_related = ("tenant",)
    readonly_fields = ("updated_at", "updated_by")

    def get_readonly_fields(self, request, obj=None):
        return ("tenant", *self.readonly_fields) if obj else self.readonly_fields

    @admin.display(description="allowed modalities")
    def modalities(self, obj: MultimodalPolicy) -> str:
        return ", ".join(obj.allowed_modalities) or "none"

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
