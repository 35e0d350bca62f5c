"""Content that makes an allowed file type dangerous: active PDFs, image polyglots, office zip bombs.

`sniff` (core/filetypes.py) decides what a file claims to be from its header; `hostile_content` then reads the
file as that kind and returns why it is refused, in words for the sender, or None. Every check works on the bytes
without rendering, executing or extracting anything.

Limits of what is seen:
- PDF: names are read with their `#xx` escapes decoded, in the file itself and inside FlateDecode object streams
  (`/Type /ObjStm`, where compressed PDFs keep their dictionaries). Object streams under other filters, and those of
  encrypted PDFs, are not decoded; an action hidden there is not seen (readers run JavaScript only when enabled).
- Images: PNG is walked chunk by chunk (CRCs checked) and GIF block by block to their end marker; data after it,
  and HTML or script markers anywhere in an image, are refused. JPEG is only scanned for those markers.
- Office files: the zip's central directory is read (entry count and declared sizes); nothing is decompressed.
  A reader that extracts the file checks the declared sizes against the data.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from typing import IO

from django.conf import settings

from core.filetypes import DOCX, GIF, JPEG, PDF, PNG, PPTX, XLSX, FileKind

_OFFICE = {DOCX, XLSX, PPTX}
_IMAGES = {PNG, GIF, JPEG}

# What a browser or a script engine would act on, were the file ever opened as a page or loaded as a script.
# Long enough that compressed image data does not spell one by chance (a 25 MiB JPEG of random bytes: < 0.1 %).
# Matched against the lowercased bytes: a case-insensitive pattern is three times slower.
_MARKUP_MARKERS = re.compile(rb"<(?:script|html|body|iframe|object|embed)|<svg[\s/>]|<!doctype|<\?php|javascript:")

# A PDF name is "/" and its regular characters (PDF 32000 §7.3.5); only the active names, and names with `#xx`
# escapes (which may spell one), are looked at closely.
_PDF_REGULAR = rb"[^\s()<>\[\]{}/%]"
_PDF_NAME = re.compile(rb"/" + _PDF_REGULAR + rb"*")
_PDF_CANDIDATE = re.compile(
    rb"/(?:JavaScript|JS|Launch)(?!" + _PDF_REGULAR + rb")|/" + _PDF_REGULAR + rb"*#" + _PDF_REGULAR + rb"*"
)
_PDF_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_PDF_ACTIVE_NAMES = {b"/JavaScript": "JavaScript", b"/JS": "JavaScript", b"/Launch": "a launch action"}
_PDF_STREAM = re.compile(rb"stream\r?\n")
# Enough to hold the largest object streams real PDFs have; more is refused rather than left unchecked.
_PDF_OBJECT_STREAMS_MAX_BYTES = 64 * 1024 * 1024


def hostile_content(stream: IO[bytes], kind: FileKind) -> str | None:
    """Why a file of this (sniffed) kind is refused, as the end of a sentence, or None. Leaves the stream at 0."""
    stream.seek(0)
    try:
        if kind in _OFFICE:
            return _office_bomb(stream)
        if kind == PDF:
            return _pdf_active_content(stream.read())
        if kind in _IMAGES:
            return _image_polyglot(stream.read(), kind)
        return None
    finally:
        stream.seek(0)


# ---- office documents ----------------------------------------------------------------------------------------


def _office_bomb(stream: IO[bytes]) -> str | None:
    limits = settings.MAILBOX
    try:
        with zipfile.ZipFile(stream) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        return "it is not a readable Office document"
    if len(entries) > limits["OFFICE_MAX_ENTRIES"]:
        return f"it holds {len(entries):,} parts, more than the {limits['OFFICE_MAX_ENTRIES']:,} an Office document may"
    expanded = sum(entry.file_size for entry in entries)
    if expanded > limits["OFFICE_MAX_EXPANDED_BYTES"]:
        return (
            f"it expands to {_mib(expanded)} when opened, more than the {_mib(limits['OFFICE_MAX_EXPANDED_BYTES'])} "
            "an Office document may"
        )
    packed = sum(entry.compress_size for entry in entries)
    ratio = limits["OFFICE_MAX_COMPRESSION_RATIO"]
    # Small documents are left alone: a few kilobytes of repetitive XML compress very well and harm nobody.
    if expanded > 16 * 1024 * 1024 and expanded > ratio * max(packed, 1):
        return f"it expands {expanded // max(packed, 1):,} times when opened (a compression bomb)"
    return None


def _mib(count: int) -> str:
    return f"{count / (1024 * 1024):,.0f} MiB"


# ---- PDF -------------------------------------------------------------------------------------------------------


def _pdf_active_content(data: bytes) -> str | None:
    found = _pdf_active_name(data)
    if found:
        return found
    budget = _PDF_OBJECT_STREAMS_MAX_BYTES
    for match in _PDF_STREAM.finditer(data):
        if data[match.start() - 3 : match.start()] == b"end" or not _is_object_stream(data, match.start()):
            continue
        inflater = zlib.decompressobj()
        try:
            inside = inflater.decompress(memoryview(data)[match.end() :], budget + 1)
        except zlib.error:
            continue  # not FlateDecode, or damaged: its objects are not readable to a viewer either
        budget -= len(inside)
        if budget < 0:
            return "its compressed objects are too large to check"
        found = _pdf_active_name(inside)
        if found:
            return found
    return None


def _pdf_active_name(data: bytes) -> str | None:
    for match in _PDF_CANDIDATE.finditer(data):
        name = match.group()
        if b"#" in name:
            name = _PDF_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), name)
        what = _PDF_ACTIVE_NAMES.get(name)
        if what:
            return f"it contains {what}, which PDF readers run when it is opened"
    return None


def _is_object_stream(data: bytes, stream_at: int) -> bool:
    # The stream's dictionary lies between its "N 0 obj" and the "stream" keyword.
    start = data.rfind(b"obj", max(0, stream_at - 4096), stream_at)
    dictionary = data[start:stream_at] if start >= 0 else data[max(0, stream_at - 4096) : stream_at]
    names = {_PDF_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), n) for n in _PDF_NAME.findall(dictionary)}
    return b"/ObjStm" in names


# ---- images ----------------------------------------------------------------------------------------------------


def _image_polyglot(data: bytes, kind: FileKind) -> str | None:
    if kind == PNG:
        problem = _png_structure(data)
    elif kind == GIF:
        problem = _gif_structure(data)
    else:
        problem = None
    if problem:
        return problem
    if _MARKUP_MARKERS.search(data.lower()):
        return "it is an image that also carries web page or script code"
    return None


def _png_structure(data: bytes) -> str | None:
    at, first = 8, True
    while at + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, at)
        kind = data[at + 4 : at + 8]
        end = at + 12 + length
        if end > len(data) or (first and kind != b"IHDR"):
            return "it is not a well-formed PNG image"
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[at + 4 : end - 4]) != crc:
            return "it is not a well-formed PNG image"
        if kind == b"IEND":
            return None if not data[end:].strip(b"\x00") else "it has data hidden after the end of the PNG image"
        at, first = end, False
    return "it is not a well-formed PNG image"


def _gif_structure(data: bytes) -> str | None:
    broken = "it is not a well-formed GIF image"
    if len(data) < 13:
        return broken
    if data[6:8] == b"/*":
        return "it is a GIF image that also reads as a script"
    flags = data[10]
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while at < len(data):
        block = data[at]
        if block == 0x3B:  # trailer
            return (
                None if not data[at + 1 :].strip(b"\x00\r\n") else "it has data hidden after the end of the GIF image"
            )
        if block == 0x21:  # extension: label, then data sub-blocks
            label, at = data[at + 1 : at + 2], at + 2
            start = at
            at = _skip_sub_blocks(data, at)
            if at < 0:
                return broken
            if label == b"\xfe" and b"*/" in data[start:at]:  # a comment closing a script comment
                return "it is a GIF image that also reads as a script"
        elif block == 0x2C:  # image descriptor, optional local colour table, LZW code size, data sub-blocks
            if at + 10 > len(data):
                return broken
            local = data[at + 9]
            at += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
            at = _skip_sub_blocks(data, at)
            if at < 0:
                return broken
        else:
            return broken
    return broken


def _skip_sub_blocks(data: bytes, at: int) -> int:
    """The position after a run of GIF data sub-blocks (each a length byte then data, ended by length 0), or -1."""
    while at < len(data):
        size = data[at]
        at += 1 + size
        if size == 0:
            return at
    return -1
