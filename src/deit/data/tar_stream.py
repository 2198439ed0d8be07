"""A tar archive read front to back, one read per member and one per header: the files of a shard.

What this room holds: :func:`tar_files`, the ``(name, bytes)`` of every regular
file of a tar stream (a local file, a ``pipe:`` command's output, an HTTP
body), in the archive's order.

Why not :func:`tarfile.open` in stream mode (``"r|"``), which the shard
reader used before: its buffer is joined and sliced again at every read, so a
100 KB image cost ten reads and as many copies. Here each member's padding
and the next header are one read, and the member's data one read of its
size. A ustar or GNU header's name, size and type are read straight from
their fields once its checksum checks out (5 µs, where
:meth:`tarfile.TarInfo.frombuf`, which parses every field, takes 22); any
other header (a base-256 size, an old v7 header, a bad checksum to report)
goes to ``frombuf``, the standard library's parser. On photo-sized shards a
sample (names, labels and checks included) takes 0.031 ms to read, against
0.087 in tarfile's stream mode and 0.022 for the image as its own file
(``python benchmarks/shard_read.py``, a Zen 4 EPYC, 2026-12-07:
benchmarks/loader/shard-read-ab-2026-12-07.txt); decoding and cropping such
an image take ~1.2 ms.
GNU long names (``L``) and pax extended headers (``x``: ``path``, ``size``)
apply to the member after them, as :mod:`tarfile` applies them; pax global
headers, links, directories and other special members are skipped; a GNU
sparse member (never an image in practice) is refused.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import BinaryIO

BLOCK = 512
_END = bytes(BLOCK)


def tar_files(stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, data)`` of each regular file of the tar archive read from ``stream``.

    Stops at the first end-of-archive block, leaving the rest of the stream
    (the second zero block and the padding) unread. Raises ``EOFError`` when
    the stream ends inside a header or a member, and ``tarfile.HeaderError``
    on a header that is not a tar header (a bad checksum, say). A stream that
    ends cleanly between two members is not an error here: the caller checks
    for the end-of-archive blocks.
    """
    long_name, pax, padding = None, {}, 0
    while True:
        header = _next_header(stream, padding)  # the last member's padding, then a header
        if header is None or header == _END:
            return
        header_name, header_size, kind = _fields(header)
        size = int(pax.get("size", header_size))
        data = _read(stream, size)
        padding = -size % BLOCK  # to a whole block
        if kind == tarfile.GNUTYPE_LONGNAME:
            long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif kind == tarfile.XHDTYPE:
            pax = _pax_records(data)
        elif kind not in (tarfile.XGLTYPE, tarfile.GNUTYPE_LONGLINK):  # a member:
            name = pax.get("path", long_name or header_name)  # the extended name is its alone
            long_name, pax = None, {}
            if kind == tarfile.GNUTYPE_SPARSE:  # its data is a map, not the file's bytes
                raise tarfile.HeaderError(f"{name} is a sparse member, which is not read")
            if kind in tarfile.REGULAR_TYPES:
                yield name, data


def _next_header(stream: BinaryIO, padding: int) -> bytes | None:
    """The next header block, read with the ``padding`` bytes before it in one read; None
    where the stream ends cleanly after the padding. ``EOFError`` where it ends inside."""
    want = padding + BLOCK
    chunk = stream.read(want)
    while 0 < len(chunk) < want:  # a pipe or a socket may return less than asked
        more = stream.read(want - len(chunk))
        if not more:
            break
        chunk += more
    if len(chunk) == padding:
        return None
    if len(chunk) < want:
        where = "a member" if len(chunk) < padding else "a header"
        raise EOFError(f"the stream ends inside {where}")
    return chunk[padding:]


_USTAR = b"ustar"  # at byte 257 of POSIX ("ustar\0" "00") and GNU ("ustar  \0") headers


def _fields(header: bytes) -> tuple[str, int, bytes]:
    """(name, size, type) of a header block, as :meth:`tarfile.TarInfo.frombuf` reads them."""
    if header[257:262] == _USTAR:
        try:  # octal fields; a base-256 one (0x80 or 0xff first) is not: frombuf reads it
            checksum = int(header[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            checksum = -1
        if checksum == sum(header) - sum(header[148:156]) + 256:  # the field read as spaces
            name = header[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            kind = header[156:157]
            if kind == tarfile.AREGTYPE and name.endswith("/"):  # an old v7 directory
                kind = tarfile.DIRTYPE
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix and kind not in tarfile.GNU_TYPES:
                name = prefix.decode("utf-8", "surrogateescape") + "/" + name
            return name, size, kind
    info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
    return info.name, info.size, info.type


def _read(stream: BinaryIO, size: int) -> bytes:
    """Exactly ``size`` bytes of ``stream`` (a pipe or a socket may return fewer per read)."""
    data = stream.read(size) if size else b""
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            raise EOFError(f"the stream ends inside a member ({len(data)} of {size} bytes)")
        data += more
    return data


def _pax_records(data: bytes) -> dict[str, str]:
    """A pax extended header's ``"LEN key=value\\n"`` records (LEN counts the whole record)."""
    records, at = {}, 0
    try:
        while at < len(data) and data[at] != 0:
            space = data.index(b" ", at)
            length = int(data[at:space])
            if length <= space - at or data[at + length - 1 : at + length] != b"\n":
                raise ValueError
            key, _, value = data[space + 1 : at + length - 1].partition(b"=")
            if key == b"size" and not value.isdigit():
                raise ValueError
            records[key.decode("utf-8", "surrogateescape")] = value.decode(
                "utf-8", "surrogateescape"
            )
            at += length
    except ValueError:
        raise tarfile.HeaderError(f"invalid pax extended header at byte {at}") from None
    return records
