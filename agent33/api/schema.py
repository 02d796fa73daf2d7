"""drf-spectacular: declare the bearer scheme for our authentication class."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "agent33.auth.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "a33_<prefix>_<secret>",
            "description": "An API token issued with `manage.py issue_token` or in the admin.",
        }
