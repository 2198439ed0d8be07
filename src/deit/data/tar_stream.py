"""A tar archive read front to back, one read per header and one per member: the files of a shard.

What this room holds: :func:`tar_files`, the ``(name, bytes)`` of every regular
file of a tar stream (a local file, a ``pipe:`` command's output, an HTTP
body), in the archive's order.

Why not :func:`tarfile.open` in stream mode (``"r|"``), which the shard
reader used before: its buffer is joined and sliced again at every read, so a
100 KB image cost ten reads and as many copies. On photo-sized shards it
took 0.091 ms an image against 0.057 for the shard reader on this module
(names, labels and checks included) and 0.022 to read each image from its
own file (``python benchmarks/shard_read.py``, a Zen 4 EPYC, 2026-12-07:
benchmarks/loader/shard-read-2026-12-07.md); decoding and cropping such an
image take ~1.2 ms. Here each header is one 512-byte read parsed by
:meth:`tarfile.TarInfo.frombuf` (the standard library's parser, checksum
checked), and each member's data one read of its size.
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
    long_name, pax = None, {}
    while True:
        header = stream.read(BLOCK)
        if 0 < len(header) < BLOCK:  # a pipe or a socket may return less than asked
            header += _read(stream, BLOCK - len(header))
        if not header or header == _END:
            return
        info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
        size = int(pax.get("size", info.size))
        data = _read(stream, size)
        _read(stream, -size % BLOCK)  # the member's padding to a whole block
        if info.type == tarfile.GNUTYPE_LONGNAME:
            long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif info.type == tarfile.XHDTYPE:
            pax = _pax_records(data)
        elif info.type not in (tarfile.XGLTYPE, tarfile.GNUTYPE_LONGLINK):  # a member:
            name = pax.get("path", long_name or info.name)  # the extended name is its alone
            long_name, pax = None, {}
            if info.type == tarfile.GNUTYPE_SPARSE:  # its data is a map, not the file's bytes
                raise tarfile.HeaderError(f"{name} is a sparse member, which is not read")
            if info.type in tarfile.REGULAR_TYPES:
                yield name, data


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
