"""The outcomes views' JSON parser: the non-standard tokens NaN / Infinity / -Infinity are
decoded rather than refused at the parser, so the validator can reject them with an error
naming the field (and the bulk event's index) that carries them: no non-finite number is ever
stored."""

from agent33.api.parsers import SafeJSONParser

__all__ = ["OutcomesJSONParser"]


class OutcomesJSONParser(SafeJSONParser):
    strict = False  # outcomes.validation rejects non-finite numbers by field
