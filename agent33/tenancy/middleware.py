from agent33.tenancy.context import clear_scope, reset_scope, set_scope

__all__ = ["StaffTenantScopeMiddleware", "TenantContextMiddleware"]


class TenantContextMiddleware:
    """Every request starts with no tenant scope and leaves none behind for the next request
    on the same thread; authentication sets it (agent33.auth.authentication)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = clear_scope()
        try:
            return self.get_response(request)
        finally:
            reset_scope(token)


class StaffTenantScopeMiddleware:
    """Staff pages (the admin and its JSON views) run in the staff member's tenant scope:
    superusers see every tenant, other staff only the tenants granted to them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/admin/"):
            user = request.user
            if user.is_authenticated and user.is_staff:
                from agent33.tenancy.staff import staff_scope

                set_scope(staff_scope(user))
        return self.get_response(request)
