"""The tar reader of the shards: every format tarfile writes, read as tarfile reads it; failures."""

import io
import tarfile

import pytest

from deit.data.tar_stream import tar_files

LONG = "n01440764/" + "a" * 140 + ".jpg"  # over ustar's 100-byte name (and 155-byte prefix)


def _archive(fmt: int) -> bytes:
    """A tar in format ``fmt`` with short, long and non-ASCII names, a directory, a link, an
    empty file and a member larger than one block."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        folder = tarfile.TarInfo("n01440764")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in (("n01440764/a.jpg", b"\xff\xd8" + bytes(range(256)) * 9),
                           ("n01440764/a.cls", b"3"), (LONG, b"long"), ("n01440764/é.cls", b""),
                           ("x/" * 60 + "deep.cls", b"7")):  # fmt: skip
            if fmt == tarfile.USTAR_FORMAT and (name == LONG or not name.isascii()):
                continue  # ustar cannot hold them
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        link = tarfile.TarInfo("n01440764/link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "a.jpg"
        tar.addfile(link)
    return out.getvalue()


def _as_tarfile_reads(archive: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]


class Trickle(io.BytesIO):
    """A stream that returns at most 300 bytes a read, as a pipe or a socket may."""

    def read(self, size=-1):
        return super().read(300 if size < 0 else min(size, 300))


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_every_regular_file_is_read_as_tarfile_reads_it(fmt):
    archive = _archive(fmt)
    expected = _as_tarfile_reads(archive)
    assert len(expected) == (3 if fmt == tarfile.USTAR_FORMAT else 5)
    assert list(tar_files(io.BytesIO(archive))) == expected
    assert list(tar_files(Trickle(archive))) == expected


def test_it_stops_at_the_end_of_archive_block():
    archive = _archive(tarfile.PAX_FORMAT)
    stream = io.BytesIO(archive)
    list(tar_files(stream))
    rest = stream.read()
    assert rest == bytes(len(rest)) and len(rest) >= 512  # the second block and the padding


def test_a_stream_cut_inside_a_member_or_a_header_is_an_eof_error():
    archive = _archive(tarfile.GNU_FORMAT)
    for cut in (1000, 512 * 3 + 100):
        with pytest.raises(EOFError):
            list(tar_files(io.BytesIO(archive[:cut])))
    assert list(tar_files(io.BytesIO(b""))) == []  # nothing at all: the caller says truncated


def test_a_header_that_is_not_a_tar_header_is_a_header_error():
    archive = bytearray(_archive(tarfile.USTAR_FORMAT))
    archive[600] ^= 0xFF  # inside the second header's name: its checksum no longer matches
    with pytest.raises(tarfile.HeaderError):
        list(tar_files(io.BytesIO(bytes(archive))))
    with pytest.raises(tarfile.HeaderError):
        list(tar_files(io.BytesIO(b"not a tar file at all".ljust(512, b"!"))))


@pytest.mark.parametrize("record", [b"99 path=x\n", b"11 size=4x\n"])  # a wrong length; size
def test_a_broken_pax_record_is_a_header_error(record):
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, len(record)
    block = header.tobuf(tarfile.USTAR_FORMAT) + record.ljust(512, b"\0")
    with pytest.raises(tarfile.HeaderError, match="pax"):
        list(tar_files(io.BytesIO(block + bytes(1024))))


def test_a_sparse_member_is_refused_not_read_as_its_map():
    member = tarfile.TarInfo("a.jpg")
    member.type = tarfile.GNUTYPE_SPARSE
    archive = member.tobuf(tarfile.GNU_FORMAT) + bytes(1024)
    with pytest.raises(tarfile.HeaderError, match="a.jpg is a sparse member"):
        list(tar_files(io.BytesIO(archive)))


def test_a_pax_size_record_gives_the_next_members_size():
    """As for members over 8 GiB, whose size only the pax header can hold."""
    record = b"10 size=4\n"
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(record)
    member = tarfile.TarInfo("k.cls")  # its own size field says 0
    archive = pax.tobuf(tarfile.USTAR_FORMAT) + record.ljust(512, b"\0")
    archive += member.tobuf(tarfile.USTAR_FORMAT) + b"1234".ljust(512, b"\0") + bytes(1024)
    assert _as_tarfile_reads(archive) == [("k.cls", b"1234")]
    assert list(tar_files(io.BytesIO(archive))) == [("k.cls", b"1234")]


def test_a_base_256_size_and_a_stream_ending_after_a_members_padding():
    """The fields read straight from a header are tarfile's; a size in base-256 (GNU's for
    members over 8 GiB) is read by tarfile's own parser; a stream that ends cleanly between
    two members ends the listing (the caller checks for the end-of-archive blocks)."""
    archive = bytearray(_archive(tarfile.GNU_FORMAT))
    size = int(archive[512 + 124 : 512 + 135], 8)  # the second header's member, a.jpg
    archive[512 + 124 : 512 + 136] = b"\x80" + size.to_bytes(11, "big")
    archive[512 + 148 : 512 + 156] = b" " * 8
    checksum = sum(archive[512:1024])
    archive[512 + 148 : 512 + 156] = b"%06o\0 " % checksum
    expected = _as_tarfile_reads(bytes(archive))
    assert expected[0][0] == "n01440764/a.jpg" and len(expected[0][1]) == size
    assert list(tar_files(io.BytesIO(bytes(archive)))) == expected
    end = 512 + 512 + (size + 511) // 512 * 512  # the folder's header, a.jpg's and its blocks
    assert list(tar_files(io.BytesIO(bytes(archive[:end])))) == expected[:1]
    with pytest.raises(EOFError, match="inside a member"):
        list(tar_files(io.BytesIO(bytes(archive[: end - 10]))))  # inside its padding


def test_an_old_v7_directory_is_not_a_file():
    """v7 tar wrote directories as regular members (type NUL) named with a trailing slash."""
    header = bytearray(tarfile.TarInfo("v7dir/").tobuf(tarfile.USTAR_FORMAT))
    header[156:157] = tarfile.AREGTYPE
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    archive = bytes(header) + _archive(tarfile.USTAR_FORMAT)
    assert list(tar_files(io.BytesIO(archive))) == _as_tarfile_reads(archive)
