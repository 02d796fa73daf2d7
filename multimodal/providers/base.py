"""The one small interface every multimodal engine implements.

Engines know nothing about Django, tenants or requests: they take bytes or text and a
`ProviderCall` (deadline, model, credentials, options) and return a `ProviderOutput`, or raise
`ProviderError` saying which provider failed and why. The multimodal services own
everything around them (claiming rows, storing artifacts, recording results, costs).

Each engine declares, per modality, the options it accepts (`Provider.options`: name →
`Option`, which knows the value's type, range and allowed values) so a request's options are
checked before it is stored; how it reports usage (`ProviderOutput.usage` in the units of
`multimodal.pricing.UNITS`, and `usage_source`); and how it estimates the usage of an input
before running it (`estimate_usage`), for spend limits.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "MODALITY_SPEECH_TO_TEXT",
    "MODALITY_TEXT_TO_SPEECH",
    "MODALITY_VISION",
    "USAGE_FROM_ENGINE",
    "USAGE_FROM_INPUT",
    "USAGE_FROM_PROVIDER",
    "InputFacts",
    "Option",
    "Provider",
    "ProviderCall",
    "ProviderError",
    "ProviderOutput",
]

# Where a result's usage figures come from (metadata.usage_source).
USAGE_FROM_PROVIDER = "provider"  # the provider's own report (OpenAI `usage`, a header)
USAGE_FROM_INPUT = "input"  # counted from what was sent (characters billed per input)
USAGE_FROM_ENGINE = "engine"  # an offline engine's own measurement

MODALITY_SPEECH_TO_TEXT = "speech_to_text"
MODALITY_TEXT_TO_SPEECH = "text_to_speech"
MODALITY_VISION = "vision_analysis"


class ProviderError(Exception):
    """A provider could not produce output. The message is shown to API users as-is,
    so it names the provider and the reason and never contains a credential.
    `unanswered_attempts`: attempts the provider may have billed although no usable answer
    came back (a 5xx, a timeout or a dropped connection after the request was sent)."""

    def __init__(self, provider: str, reason: str, *, attempts: int = 1, retryable: bool = False,
                 unanswered_attempts: int = 0):
        self.provider = provider
        self.reason = reason
        self.attempts = attempts
        self.retryable = retryable
        self.unanswered_attempts = unanswered_attempts
        super().__init__(f"{provider}: {reason}")


@dataclass(frozen=True)
class ProviderCall:
    """Everything an engine needs for one call besides its input."""

    deadline: float  # time.monotonic() value after which the call must have ended
    # The time the call was given (what a timeout message reports: the rule, not a clock).
    timeout_seconds: float | None = None
    model: str = ""  # "" = the engine's default
    api_key: str = ""
    base_url: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {"voice": "alloy"}
    # Private networks the call may reach (multimodal/network.py); empty: public hosts only.
    allowed_networks: tuple[Any, ...] = ()
    # Asked before repeating an attempt the provider may have billed: returns why the
    # retry may not be made (a spend limit with no room for it), or None.
    before_paid_retry: Callable[[], str | None] | None = None

    @classmethod
    def with_timeout(cls, seconds: float, **kwargs: Any) -> ProviderCall:
        return cls(deadline=time.monotonic() + seconds, timeout_seconds=seconds, **kwargs)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


@dataclass
class ProviderOutput:
    """What an engine produced. Audio output is WAV (or the provider's format) bytes that
    the service stores as an artifact. `usage` holds the units consumed
    (multimodal.pricing.UNITS, plus informational ones such as `pixels`)."""

    model: str
    output_text: str = ""
    output_bytes: bytes | None = None
    output_content_type: str = ""
    output_data: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1
    usage: dict[str, Any] = field(default_factory=dict)
    usage_source: str = USAGE_FROM_PROVIDER
    # Earlier attempts the provider may have billed without answering (see ProviderError).
    unanswered_attempts: int = 0


@dataclass(frozen=True)
class InputFacts:
    """What the services know about an input before running it, for estimates."""

    text_chars: int = 0
    audio_seconds: float | None = None  # from the audio header
    image_width: int | None = None
    image_height: int | None = None


class OptionInvalid(ValueError):
    """An option's value is wrong; the message is for people and never quotes long input."""


@dataclass(frozen=True)
class Option:
    """One option a provider accepts: its JSON type (`string`, `number`, `integer`,
    `boolean`, `object`), and what values pass. `choices` may be a callable, for values
    read from what is installed (espeak voices, tesseract languages); `check` runs last and
    returns a message when the value is refused."""

    kind: str
    help: str = ""
    choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = 200
    pattern: str | None = None
    fields: dict[str, Option] | None = None  # an object's own options
    check: Callable[[Any], str | None] | None = None

    def _up_to(self) -> str:
        return "" if self.maximum is None else f" and at most {self.maximum:g}"

    def allowed(self) -> list[str] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    def clean(self, value: Any) -> Any:
        """The value to send (numbers as numbers), or OptionInvalid."""
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise OptionInvalid("must be true or false")
            return value
        if self.kind in ("number", "integer"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                wanted = "an integer" if self.kind == "integer" else "a number"
                raise OptionInvalid(f"must be {wanted}")
            if self.kind == "integer" and not float(value).is_integer():
                raise OptionInvalid("must be an integer")
            if not math.isfinite(value):
                raise OptionInvalid("must be a finite number")
            value = int(value) if self.kind == "integer" else value
            if self.minimum is not None and value < self.minimum:
                raise OptionInvalid(f"must be at least {self.minimum:g}" + self._up_to())
            if self.maximum is not None and value > self.maximum:
                raise OptionInvalid(f"must be at most {self.maximum:g}")
            return value
        if self.kind == "object":
            if not isinstance(value, dict):
                raise OptionInvalid("must be an object")
            return clean_options(self.fields or {}, value)
        if not isinstance(value, str):
            raise OptionInvalid("must be a string")
        if not value or len(value) > self.max_length:
            raise OptionInvalid(f"must be 1 to {self.max_length} characters")
        # Line breaks and tabs belong in prompts; other control characters (NUL above all,
        # which PostgreSQL's jsonb cannot store) in no option.
        if any(not ch.isprintable() and ch not in "\n\r\t" for ch in value):
            raise OptionInvalid("must not contain control characters")
        allowed = self.allowed()
        if allowed is not None and value not in allowed:
            shown = ", ".join(allowed[:40]) + (", ..." if len(allowed) > 40 else "")
            raise OptionInvalid(f"{value[:60]!r} is not one of: {shown}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise OptionInvalid(
                f"{value[:60]!r} is not a valid value ({self.help or self.pattern})")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise OptionInvalid(problem)
        return value


class OptionsInvalid(ValueError):
    """Some options were refused: `errors` maps `name` (dotted for nested objects) to
    messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v[0]}" for k, v in errors.items()))


def clean_options(accepted: dict[str, Option], options: dict[str, Any]) -> dict[str, Any]:
    """Every option checked against `accepted`; OptionsInvalid names each bad one."""
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {}
    for name, value in options.items():
        key = str(name)
        option = accepted.get(name)
        if option is None:
            known = ", ".join(sorted(accepted)) or "none"
            errors[key] = [f"unknown option; accepted: {known}"]
            continue
        try:
            cleaned[name] = option.clean(value)
        except OptionsInvalid as nested:
            errors.update({f"{key}.{inner}": msgs for inner, msgs in nested.errors.items()})
        except OptionInvalid as exc:
            errors[key] = [str(exc)]
    if errors:
        raise OptionsInvalid(errors)
    return cleaned


class Provider:
    """Base class: subclasses set `name` and `modalities` and implement the methods of the
    modalities they support. Calling an unsupported one raises ProviderError."""

    name: ClassVar[str] = ""
    modalities: ClassVar[frozenset[str]] = frozenset()
    default_models: ClassVar[dict[str, str]] = {}
    # Per modality, the options a request may send (see Option); none by default.
    options: ClassVar[dict[str, dict[str, Option]]] = {}
    # The option that picks the model (ElevenLabs calls it model_id).
    model_option: ClassVar[str] = "model"
    # Offline engines: the usage unit their compute time grows with ("pixels",
    # "characters", "audio_seconds"), so the service can measure their throughput.
    size_unit: ClassVar[str] = ""

    def accepted_options(self, modality: str) -> dict[str, Option]:
        return self.options.get(modality, {})

    def validate_options(self, modality: str, options: dict[str, Any]) -> dict[str, Any]:
        """The options, checked; OptionsInvalid names every refused one."""
        return clean_options(self.accepted_options(modality), options)

    def estimate_usage(self, modality: str, facts: InputFacts, options: dict[str, Any],
                       model: str, *, seconds_per_unit: float | None = None) -> dict[str, Any]:
        """The usage a request is expected to consume, in the units the engine reports, for
        a spend limit's reservation. Units it cannot estimate are left out (a price on such
        a unit then makes the estimate unknown). `seconds_per_unit`: an offline engine's
        measured throughput on this platform (per `size_unit`), used instead of its prior."""
        return {}

    def synthesize(self, text: str, call: ProviderCall) -> ProviderOutput:  # text_to_speech
        raise ProviderError(self.name, "does not support text_to_speech")

    def transcribe(self, audio: bytes, content_type: str, call: ProviderCall) -> ProviderOutput:
        raise ProviderError(self.name, "does not support speech_to_text")

    def analyze(self, image: bytes, content_type: str, call: ProviderCall) -> ProviderOutput:
        raise ProviderError(self.name, "does not support vision_analysis")

    def run(self, modality: str, *, text: str, data: bytes | None, content_type: str,
            call: ProviderCall) -> ProviderOutput:
        """Dispatch by modality, so callers need no per-modality branching."""
        if modality not in self.modalities:
            raise ProviderError(self.name, f"does not support {modality}")
        if modality == MODALITY_TEXT_TO_SPEECH:
            return self.synthesize(text, call)
        if data is None:
            raise ProviderError(self.name, f"{modality} needs an input artifact")
        if modality == MODALITY_SPEECH_TO_TEXT:
            return self.transcribe(data, content_type, call)
        return self.analyze(data, content_type, call)
