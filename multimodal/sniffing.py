"""What a file really is, from its first bytes: the client's Content-Type is never trusted.

Only the accepted formats are recognised (an allowlist: WAV, FLAC, OGG, MP3, PNG, JPEG, WebP,
GIF); everything else is None and the upload is refused. Magic numbers are checked here, not
full decodes: whether the rest of the file is intact is the engine's business, and a broken
file fails its request with a clear provider message instead of being refused at upload.
"""

from __future__ import annotations

__all__ = ["EXTENSIONS", "SNIFF_BYTES", "describe_accepted", "sniff_content_type"]

SNIFF_BYTES = 16

EXTENSIONS: dict[str, str] = {
    "audio/wav": "wav",
    "audio/flac": "flac",
    "audio/ogg": "ogg",
    "audio/mpeg": "mp3",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
}


def _is_mpeg_audio_frame(head: bytes) -> bool:
    # An MPEG audio frame header: 11 sync bits, then version != reserved (01) and
    # layer != reserved (00). Layer 00 would also match AAC ADTS, which is not accepted.
    if len(head) < 2 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version = (head[1] >> 3) & 0b11
    layer = (head[1] >> 1) & 0b11
    return version != 0b01 and layer != 0b00


def sniff_content_type(head: bytes) -> str | None:
    """The content type of a file starting with `head` (pass at least SNIFF_BYTES)."""
    if head.startswith(b"RIFF") and len(head) >= 12:
        if head[8:12] == b"WAVE":
            return "audio/wav"
        if head[8:12] == b"WEBP":
            return "image/webp"
        return None
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"ID3") or _is_mpeg_audio_frame(head):
        return "audio/mpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return None


def describe_accepted() -> str:
    return "WAV, FLAC, OGG or MP3 audio, or PNG, JPEG, WebP or GIF images"
