from __future__ import annotations

import json

from rest_framework import serializers

from ..choices import EventType
from ..models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "AttemptSerializer",
    "DeliverySerializer",
    "EndpointCreateSerializer",
    "EndpointSecretSerializer",
    "EndpointSerializer",
    "EndpointUpdateSerializer",
]


class EndpointSerializer(serializers.ModelSerializer):
    tenant_id = serializers.CharField(read_only=True)
    previous_secret_expires_at = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text="Until then the previous secret signs beside the current one (a rotation).")
    event_types = serializers.ListField(child=serializers.ChoiceField(EventType.choices))

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "tenant_id", "url", "event_types", "description", "enabled",
                  "disabled_reason", "disabled_at", "failing_since",
                  "previous_secret_expires_at", "created_at", "updated_at"]
        read_only_fields = fields


class EndpointSecretSerializer(EndpointSerializer):
    secret = serializers.CharField(
        read_only=True, allow_null=True,
        help_text="whsec_…: shown only in this answer (create, rotate-secret); null in an "
        "Idempotency-Key replay of it.")

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class EndpointCreateSerializer(serializers.Serializer):
    url = serializers.CharField(trim_whitespace=False, help_text="http(s) URL of a public host.")
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=100), max_length=len(EventType.values) * 4,
        help_text="One or more of: " + ", ".join(EventType.values))
    description = serializers.CharField(max_length=500, required=False, allow_blank=True,
                                        default="")


class EndpointUpdateSerializer(serializers.Serializer):
    url = serializers.CharField(trim_whitespace=False, required=False)
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=100), max_length=len(EventType.values) * 4,
        required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["attempted_at", "status_code", "duration_ms", "error"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    tenant_id = serializers.CharField(read_only=True)
    endpoint_id = serializers.CharField(read_only=True)
    replay_of = serializers.CharField(source="replay_of_id", read_only=True, allow_null=True)
    payload = serializers.SerializerMethodField()
    attempts = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = ["id", "tenant_id", "endpoint_id", "event_type", "message_id", "state",
                  "attempt_count", "next_attempt_at", "last_status_code", "last_error",
                  "created_at", "finished_at", "replay_of", "payload", "attempts"]
        read_only_fields = fields

    def get_payload(self, obj) -> dict:
        return json.loads(obj.body)
