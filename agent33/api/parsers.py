from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

__all__ = ["SafeJSONParser"]


class SafeJSONParser(JSONParser):
    """DRF's parser, but a pathologically nested document (`[[[[…` 100,000 deep is a few
    hundred KB) is a 400 instead of a RecursionError escaping as a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
