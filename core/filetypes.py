"""What an uploaded file really is, decided from its bytes; and a safe display name for it.

The client's file name and content type are never trusted: `sniff` asks puremagic for the signature, then
confirms the header itself (puremagic calls every zip a .docx, and misses some HEIF brands). Markup (HTML,
SVG, XML) is refused even though it is text: opened in a browser it runs script.
"""

from __future__ import annotations

import codecs
import os
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

import puremagic

TEXT_PREFIX_BYTES = 64 * 1024
FILENAME_MAX_CHARS = 150
FALLBACK_FILENAME = "attachment"


@dataclass(frozen=True)
class FileKind:
    content_type: str
    extensions: tuple[str, ...]  # the first one is appended when the client's name claims another type
    is_text: bool = False


PDF = FileKind("application/pdf", ("pdf",))
PNG = FileKind("image/png", ("png",))
JPEG = FileKind("image/jpeg", ("jpg", "jpeg", "jpe", "jfif"))
GIF = FileKind("image/gif", ("gif",))
HEIC = FileKind("image/heic", ("heic", "heif", "hif"))
TEXT = FileKind("text/plain", ("txt", "text", "log", "csv", "md"), is_text=True)
DOCX = FileKind("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ("docx",))
XLSX = FileKind("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ("xlsx",))
PPTX = FileKind("application/vnd.openxmlformats-officedocument.presentationml.presentation", ("pptx",))

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"heif"}


def _is_heif(head: bytes) -> bool:
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


# Each allowed binary kind: puremagic's MIME types for it, and our own check of the leading bytes.
_BINARY_KINDS: dict[str, tuple[FileKind, Callable[[bytes], bool]]] = {
    "application/pdf": (PDF, lambda head: head.startswith(b"%PDF-")),
    "image/png": (PNG, lambda head: head.startswith(b"\x89PNG\r\n\x1a\n")),
    "image/jpeg": (JPEG, lambda head: head.startswith(b"\xff\xd8\xff")),
    "image/gif": (GIF, lambda head: head[:6] in (b"GIF87a", b"GIF89a")),
    "image/heic": (HEIC, _is_heif),
    "image/heif": (HEIC, _is_heif),
}
_ZIP_MIMES = {"application/zip", DOCX.content_type, XLSX.content_type, PPTX.content_type}
_MARKUP_MIMES = {"text/html", "application/xhtml+xml", "image/svg+xml", "application/xml", "text/xml"}
_MARKUP_STARTS = ("<!doctype", "<html", "<svg", "<?xml", "<script", "<head", "<body", "<iframe", "<object")
# Control characters that do occur in ordinary text files (tab, newline, form feed, carriage return).
_TEXT_CONTROLS = {"\t", "\n", "\x0c", "\r"}


def sniff(stream: IO[bytes]) -> FileKind | None:
    """The allowed kind of the file's content, or None. Leaves the stream at position 0."""
    stream.seek(0)
    head = stream.read(TEXT_PREFIX_BYTES)
    stream.seek(0)
    if not head:
        return None
    candidates = _puremagic_best_mimes(stream)
    for mime in candidates:
        if mime in _ZIP_MIMES:
            office = _office_kind(stream)
            if office is not None:
                return office
        elif mime in _BINARY_KINDS:
            kind, confirms = _BINARY_KINDS[mime]
            if confirms(head):
                return kind
    if _is_heif(head):
        return HEIC
    if candidates & _MARKUP_MIMES:
        return None
    # A text prefix only nominates the file; the caller checks the rest while reading it (see `TextChecker`).
    checker = TextChecker()
    is_text = checker.feed(head) and (len(head) == TEXT_PREFIX_BYTES or checker.finish())
    return TEXT if is_text and not _looks_like_markup(head) else None


def _puremagic_best_mimes(stream: IO[bytes]) -> set[str]:
    try:
        matches = puremagic.magic_stream(stream)
    except (puremagic.PureError, ValueError):
        return set()
    finally:
        stream.seek(0)
    best = max(match.confidence for match in matches)
    return {match.mime_type for match in matches if match.confidence == best and match.mime_type}


def _office_kind(stream: IO[bytes]) -> FileKind | None:
    """An Office Open XML document: a zip with [Content_Types].xml and the parts of Word, Excel or PowerPoint."""
    try:
        with zipfile.ZipFile(stream) as archive:  # reads the central directory only, not the members
            names = archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        return None
    finally:
        stream.seek(0)
    if "[Content_Types].xml" not in names:
        return None
    if any(name.lower().endswith("vbaproject.bin") for name in names):
        return None  # macro-enabled documents carry code
    for prefix, kind in (("word/", DOCX), ("xl/", XLSX), ("ppt/", PPTX)):
        if any(name.startswith(prefix) for name in names):
            return kind
    return None


def _looks_like_markup(head: bytes) -> bool:
    start = head[:256].decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n").lower()
    return start.startswith(_MARKUP_STARTS)


class TextChecker:
    """Plain text is UTF-8 without NUL or other binary control bytes, checked chunk by chunk.

    A chunk boundary may split a multi-byte character: the incremental decoder keeps the partial bytes.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, chunk: bytes) -> bool:
        try:
            text = self._decoder.decode(chunk, final=False)
        except UnicodeDecodeError:
            return False
        return not any(_is_binary_control(c) for c in set(text))

    def finish(self) -> bool:
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
        return True


def _is_binary_control(c: str) -> bool:
    return (c < " " and c not in _TEXT_CONTROLS) or "\x7f" <= c < "\xa0"


def clean_filename(raw: str | None) -> str:
    """The client's name reduced to a safe display name: base name only, printable, bounded."""
    name = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    # Cc: control characters; Cf: format characters such as U+202E, which reverses "exe.pdf" on screen.
    name = "".join(c for c in name if unicodedata.category(c) not in {"Cc", "Cf", "Zl", "Zp"})
    name = "".join("_" if c in '<>:"|?*' else c for c in name)
    name = " ".join(name.split()).strip(" .")
    if len(name) > FILENAME_MAX_CHARS:
        stem, ext = os.path.splitext(name)
        ext = ext if len(ext) <= 16 else ""
        name = stem[: FILENAME_MAX_CHARS - len(ext)].rstrip(" .") + ext
    return name or FALLBACK_FILENAME


def display_filename(raw: str | None, kind: FileKind) -> str:
    """The cleaned name; when its extension claims another type ("invoice.bat"), the real one is appended."""
    name = clean_filename(raw)
    _, ext = os.path.splitext(name)
    if ext and ext[1:].lower() not in kind.extensions:
        name = f"{name}.{kind.extensions[0]}"
    return name
