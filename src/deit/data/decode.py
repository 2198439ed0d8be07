"""Decoding an image file into a uint8 RGB array: libjpeg-turbo (simplejpeg) for JPEGs, else Pillow.

What this room holds: :func:`read_file` (the bytes, or a one-line
:class:`~deit.data.layout.DataError`), :func:`image_size` (the header's
size, nothing decoded), :func:`decode_rgb` (H×W×3 uint8, a JPEG at
1/1, 1/2, 1/4 or 1/8 scale) and :func:`jpeg_reduction` (the largest of those
scales that still leaves a region as large as needed).

A JPEG in YCbCr or grayscale is decoded by simplejpeg (a libjpeg-turbo
binding; its default integer IDCT and fancy upsampling are Pillow's, so the
pixels are the same, at every scale, as Pillow's ``draft`` + ``convert
("RGB")``). Everything else goes to :func:`deit.data.folder.open_rgb`, as
before: PNG, WebP, BMP, CMYK/YCCK JPEGs, a JPEG simplejpeg refuses (it
stops at any libjpeg warning, e.g. extraneous bytes, which Pillow decodes
through) and every file when simplejpeg is not installed. A file neither can
read raises Pillow's one-line ``DataError`` naming it, so ``skip_bad_files``
and ``deit data --check`` list the same files as before.
"""

from __future__ import annotations

import io
import threading

import numpy as np
from PIL import Image

from deit.data.folder import open_rgb
from deit.data.layout import DataError

try:
    import simplejpeg
except ImportError:  # optional at run time: Pillow decodes the same pixels, slower
    simplejpeg = None

__all__ = ["decode_rgb", "image_size", "jpeg_reduction", "read_file"]

REDUCTIONS = (8, 4, 2, 1)
"""JPEG scales 1/s decoded in the DCT (libjpeg's fast ones; 3/8, 5/8 … cost about a full decode)."""
_JPEG = b"\xff\xd8\xff"
_OWN_COLOURS = ("YCbCr", "Gray")  # simplejpeg's colour spaces it converts as Pillow does
_scratch = threading.local()  # each thread's reusable output buffer (decode_rgb's scratch)


def read_file(path: str) -> bytes:
    """The bytes of ``path``; a missing or unreadable file raises DataError naming it."""
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as err:
        reason = "no such file" if isinstance(err, FileNotFoundError) else err.strerror or err
        raise DataError(f"cannot decode {path}: {reason}") from None


def image_size(data: bytes, name: str) -> tuple[int, int] | None:
    """(width, height) from the header of the file ``data``, or None if it cannot be parsed.

    None leaves the reason to :func:`decode_rgb`, which raises it (``name``
    is the file's path, for messages only).
    """
    header = _turbo_header(data)
    if header is not None:
        return header[1], header[0]
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # reported, with its reason, by the decode that follows
        return None


def jpeg_reduction(data: bytes, needed: float) -> int:
    """The largest JPEG scale divisor s in (1, 2, 4, 8) with ``needed / s >= 1``; 1 if not a JPEG.

    ``needed`` is the ratio of the smallest region the caller uses (in the
    original's pixels) to the size it must keep (e.g. a crop's short side
    over the output size): decoding at 1/s keeps at least that many pixels.
    """
    if not data.startswith(_JPEG):
        return 1
    return next((s for s in REDUCTIONS if needed >= s), 1)


def decode_rgb(data: bytes, name: str, reduction: int = 1, *, scratch: bool = False) -> np.ndarray:
    """The image in ``data`` as a uint8 H×W×3 RGB array; a JPEG at 1/``reduction`` scale.

    ``reduction`` (1, 2, 4 or 8) applies to JPEGs only: the result is then
    ⌈width / reduction⌉ × ⌈height / reduction⌉ (libjpeg's scaled IDCT);
    other formats come back at full size. Grayscale, palette, CMYK and
    alpha images are converted as :func:`~deit.data.folder.open_rgb` does.
    With ``scratch`` a JPEG is decoded into a buffer this thread reuses at
    its next scratch decode, so the caller must copy what it keeps: a worker
    that keeps a batch of crops as views of fresh arrays pays the kernel for
    new zeroed pages on every image (benchmarks/RESULTS.md, the loader).
    Raises DataError naming ``name`` when the data cannot be decoded.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction}")
    header = _turbo_header(data)
    if header is not None and header[2] in _OWN_COLOURS:
        height, width = header[0], header[1]
        out = {"buffer": _scratch_buffer(height * width * 3)} if scratch else {}
        try:
            return simplejpeg.decode_jpeg(
                data, "RGB", min_height=-(-height // reduction),
                min_width=-(-width // reduction), strict=True, **out,
            )  # fmt: skip
        except ValueError:  # truncated, or a libjpeg warning: Pillow decides, as before
            pass
    draft = None
    if reduction > 1 and data.startswith(_JPEG):
        size = image_size(data, name)  # Pillow's draft picks min(W // w, H // h) → exactly s
        draft = (max(1, size[0] // reduction), max(1, size[1] // reduction)) if size else None
    return np.array(open_rgb(name, draft, data=data))  # writable, as torch.from_numpy wants


def _scratch_buffer(size: int) -> np.ndarray:
    """This thread's reusable output buffer, grown to at least ``size`` bytes."""
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = _scratch.buffer = np.empty(size, dtype=np.uint8)
    return buffer


def _turbo_header(data: bytes) -> tuple[int, int, str, str] | None:
    """simplejpeg's (height, width, colour space, subsampling) of a JPEG, or None."""
    if simplejpeg is None or not data.startswith(_JPEG):
        return None
    try:
        return simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
