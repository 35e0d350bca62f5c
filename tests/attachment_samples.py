"""Small but well-formed files of each kind, built in memory, for upload tests."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from django.core.files.uploadedfile import SimpleUploadedFile


def pdf_bytes() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes() -> bytes:
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1 by 1 pixel, 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_bytes() -> bytes:
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"


def gif_bytes() -> bytes:
    palette = b"\x00\x00\x00\xff\xff\xff"
    image = b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00"
    return b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + palette + image + b";"


def heic_bytes(brand: bytes = b"heic") -> bytes:
    ftyp = b"ftyp" + brand + b"\x00\x00\x00\x00" + b"mif1heic"
    return struct.pack(">I", len(ftyp) + 4) + ftyp + b"\x00\x00\x00\x08free"


def docx_bytes(parts: tuple[str, ...] = ("[Content_Types].xml", "_rels/.rels", "word/document.xml")) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for part in parts:
            archive.writestr(part, "<?xml version='1.0'?><x/>")
    return buffer.getvalue()


def elf_bytes() -> bytes:
    return b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + b"\x00" * 40


def windows_exe_bytes() -> bytes:
    return b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 44 + b"PE\x00\x00"


def upload(name: str, content: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)


# ---- hostile files of allowed types -----------------------------------------------------------------------------


def pdf_with(catalog_extra: bytes = b"", *objects: bytes) -> bytes:
    """A one-page-less PDF whose catalog carries `catalog_extra`, plus further objects numbered from 3."""
    body = b"%PDF-1.7\n1 0 obj<</Type/Catalog/Pages 2 0 R" + catalog_extra + b">>endobj\n"
    body += b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    for number, obj in enumerate(objects, start=3):
        body += b"%d 0 obj" % number + obj + b"endobj\n"
    return body + b"trailer<</Root 1 0 R>>\n%%EOF\n"


def pdf_with_open_action_javascript() -> bytes:
    return pdf_with(b"/OpenAction 3 0 R", b"<</Type/Action/S/JavaScript/JS(app.alert('hi'))>>")


def pdf_with_escaped_javascript_name() -> bytes:
    return pdf_with(b"/OpenAction 3 0 R", b"<</S/J#61vaScript/J#53(app.alert(1))>>")


def pdf_with_launch_action() -> bytes:
    return pdf_with(b"/OpenAction 3 0 R", b"<</S/Launch/F(cmd.exe)>>")


def pdf_with_javascript_in_an_object_stream() -> bytes:
    # Object 4 (the action) lives compressed inside object stream 3, as PDF 1.5+ writers store dictionaries.
    inner = b"<</S/JavaScript/JS(app.alert(1))>>"
    packed = zlib.compress(b"4 0 " + inner)
    stream = b"<</Type/ObjStm/N 1/First 4/Filter/FlateDecode/Length %d>>stream\n" % len(packed) + packed
    return pdf_with(b"/OpenAction 4 0 R", stream + b"\nendstream\n")


def pdf_with_plain_open_action() -> bytes:
    # Opening at a page and zoom is the common, harmless OpenAction.
    return pdf_with(b"/OpenAction[3 0 R/Fit]", b"<</Type/Page/Parent 2 0 R>>")


def gif_javascript_polyglot() -> bytes:
    # The classic: width bytes "/*" open a script comment, a GIF comment closes it and holds the code.
    script = b"*/=alert(document.domain);/*"
    palette = b"\x00\x00\x00\xff\xff\xff"
    image = b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00"
    return b"GIF89a/*\x01\x00\x80\x00\x00" + palette + b"!\xfe" + bytes([len(script)]) + script + b"\x00" + image + b";"


def gif_with_script_after_its_end() -> bytes:
    return gif_bytes() + b"\n<script>alert(1)</script>"


def png_header_with_html() -> bytes:
    return b"\x89PNG\r\n\x1a\n<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"


def png_with_html_after_its_end() -> bytes:
    return png_bytes() + b"<html><script>alert(1)</script></html>"


def png_with_script_in_a_text_chunk() -> bytes:
    png = png_bytes()
    end = png.index(b"IEND") - 4
    return png[:end] + _png_chunk(b"tEXt", b"Comment\x00<script>alert(1)</script>") + png[end:]


def docx_expanding_to(size: int) -> bytes:
    """A Word document whose one body part is `size` bytes of zeros (a few MiB compressed for 1 GiB)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", "<?xml version='1.0'?><x/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            chunk = b"\x00" * (1 << 20)
            for _ in range(size // len(chunk)):
                part.write(chunk)
    return buffer.getvalue()


def docx_with_parts(count: int) -> bytes:
    names = ["[Content_Types].xml", "word/document.xml"] + [f"word/media/p{n}.xml" for n in range(count - 2)]
    return docx_bytes(tuple(names))
