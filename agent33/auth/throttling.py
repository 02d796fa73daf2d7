"""Per-token throttling on the default cache (Redis when configured, so shared by workers)."""

from rest_framework.throttling import SimpleRateThrottle

__all__ = ["TokenRateThrottle"]


class TokenRateThrottle(SimpleRateThrottle):
    scope = "token"

    def get_cache_key(self, request, view):
        principal = request.user
        if principal is not None and getattr(principal, "token", None) is not None:
            ident = f"token-{principal.token.pk}"
        else:
            ident = f"ip-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
