from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from guardian.admin import GuardedModelAdmin

from agent33.auth.scopes import ALL_SCOPES, FAMILIES, operator_only_scopes

from .models import ApiToken, Tenant
from .services import token_issue, token_revoke
from .staff import staff_tenants

SCOPE_CHOICES = [(s, s) for s in ALL_SCOPES] + [(f"{f}:*", f"{f}:*") for f in sorted(FAMILIES)]


@admin.register(Tenant)
class TenantAdmin(GuardedModelAdmin):
    """Object permissions ("Object permissions" button) grant staff access to a tenant."""

    list_display = ("slug", "name", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("slug", "name")

    def get_queryset(self, request):
        return staff_tenants(request.user)

    def get_readonly_fields(self, request, obj=None):
        return ("slug", "created_at") if obj else ("created_at",)


class ApiTokenCreateForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=SCOPE_CHOICES, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiToken
        fields = ("tenant", "name", "scopes", "expires_at")

    def clean(self):
        cleaned = super().clean()
        cross_tenant = operator_only_scopes(cleaned.get("scopes") or [])
        if cleaned.get("tenant") is not None and cross_tenant:
            self.add_error("scopes", f"Only an all-tenants (operator) token may hold "
                                     f"{', '.join(cross_tenant)}.")
        return cleaned


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "display_prefix", "tenant", "scope_list", "state_label",
                    "created_at", "expires_at", "last_used_at")
    list_filter = ("tenant", "revoked_at")
    search_fields = ("name", "prefix")
    actions = ["revoke_tokens"]
    readonly_fields = ("display_prefix", "tenant", "name", "scopes", "created_by", "created_at",
                       "expires_at", "last_used_at", "revoked_at")

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("tenant")
        if request.user.is_superuser:
            return queryset
        # Operator tokens (no tenant) are platform-wide: superusers only.
        return queryset.filter(tenant__in=staff_tenants(request.user))

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else ()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":
            kwargs["queryset"] = staff_tenants(request.user)
            # Only superusers may issue operator (all-tenant) tokens.
            kwargs["required"] = not request.user.is_superuser
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        return False if obj is not None else super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        issued = token_issue(
            tenant=form.cleaned_data.get("tenant"),
            scopes=form.cleaned_data["scopes"],
            name=form.cleaned_data["name"],
            created_by=request.user,
            expires_at=form.cleaned_data.get("expires_at"),
        )
        for field in ApiToken._meta.concrete_fields:  # so the admin's log and redirect work
            setattr(obj, field.attname, getattr(issued.token, field.attname))
        messages.warning(
            request,
            f"New token (shown once, copy it now): {issued.plaintext}",
        )

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    @admin.display(description="state")
    def state_label(self, obj):
        return obj.state()

    @admin.action(description="Revoke selected tokens")
    def revoke_tokens(self, request, queryset):
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            token_revoke(token=token)
            count += 1
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)
