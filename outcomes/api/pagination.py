from agent33.api.pagination import LinkHeaderCursorPagination

__all__ = ["OccurredAtKeysetPagination"]


class OccurredAtKeysetPagination(LinkHeaderCursorPagination):
    ordering = ("-occurred_at", "-id")
