"""WebDataset shards: tar files of ``<key>.jpg`` + ``<key>.cls`` samples, found and read.

The format is WebDataset's (and timm's ``wds/``): a shard is a plain tar; the
members of one sample are consecutive and share a key, the member's path up
to the first dot of its file name (``n01440764_3.jpg``, ``n01440764_3.cls``);
the rest is the suffix, in any case. An image is the first of the suffixes in
`IMAGE_SUFFIXES`; its label the ``.cls`` member, an integer in decimal text.
``info.json`` (or timm's ``_info.json``) beside the shards, or named apart,
gives each split's file names and sample counts (timm's schema:
``splits.<split>.filenames``, ``shard_lengths``, ``num_samples``) and, when
:func:`deit.data.shard_writer.write_shards` wrote it, the class names, the
counts per class and each shard's size in bytes.

Why a tar reader of our own (:mod:`deit.data.tar_stream`, on the standard
library's header parser) and not the webdataset package (1.0.2): the loader
(:mod:`deit.data.shard_loader`) needs the exact order of every epoch, and the
exact place to resume from, as functions of the seed and the shards' sample
counts; webdataset's pipeline stages draw their shuffles per worker and
cannot restart mid-epoch where a run stopped. What webdataset would add
beyond that is reading a tar stream, brace expansion and opening ``pipe:``
and ``http(s)://`` sources: a hundred lines here, with no dependency, and
every failure as one line naming the shard. Shards written by webdataset's
``TarWriter``/``ShardWriter`` with these keys read the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deit.data.layout import DataError
from deit.data.tar_stream import tar_files

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "bmp")
"""Member suffixes read as the image of a sample, in this order of preference."""
INFO_NAMES = ("info.json", "_info.json")
"""The info file's names, tried in this order, beside the shards."""


class ShardError(DataError):
    """A shard is missing, truncated or holds a sample it cannot train on; one line naming it."""


def expand(pattern: str) -> list[str]:
    """The sources a pattern names: ``{000..099}`` ranges (zero-padded as written), ``{a,b}``
    alternatives, and several patterns joined by ``::`` (webdataset's notation)."""
    return [source for part in pattern.split("::") for source in _expand(part)]


def _expand(text: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", text)
    if match is None:
        return [text]
    body, head, tail = match.group(1), text[: match.start()], text[match.end() :]
    numbers = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numbers:
        low, high = numbers.groups()
        items = [f"{i:0{len(low)}d}" for i in range(int(low), int(high) + 1)]
    elif "," in body:
        items = body.split(",")
    else:
        raise ShardError(f"cannot expand {{{body}}} in {text} (write {{0..9}} or {{a,b}})")
    return [source for item in items for source in _expand(head + item + tail)]


def _remote(source: str) -> bool:
    return source.startswith(("http://", "https://"))


@contextlib.contextmanager
def open_source(source: str) -> Iterator:
    """A binary stream of ``source``: a local path (or ``file:``), ``pipe:COMMAND`` (its
    standard output) or an ``http(s)://`` URL. ``ShardError`` naming it when it cannot be
    opened, or when the command ends with an error after its output was read to the end."""
    if source.startswith("pipe:"):
        process = subprocess.Popen(source[5:], shell=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            yield process.stdout
        except ShardError:  # a failed command's empty or cut output: say why, if it failed
            process.stdout.close()
            code = process.wait()
            if code:
                raise ShardError(f"shard {source}: the command exited with status {code}") from None
            raise
        except BaseException:  # the reader stopped early: end the command
            process.kill()
            raise
        finally:
            process.stdout.close()
            code = process.wait()
        if code:
            raise ShardError(f"shard {source}: the command exited with status {code}")
        return
    if _remote(source):
        try:
            stream = urllib.request.urlopen(source, timeout=60)
        except urllib.error.HTTPError as err:
            raise ShardError(
                f"shard {source} cannot be read: HTTP {err.code} {err.reason}"
            ) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ShardError(f"shard {source} cannot be read: {reason}") from None
    else:
        path = source.removeprefix("file:")
        try:
            stream = open(path, "rb")  # noqa: SIM115 (closed below, after the yield)
        except FileNotFoundError:
            raise ShardError(f"shard {path} does not exist") from None
        except OSError as err:
            raise ShardError(f"shard {path} cannot be read: {err.strerror}") from None
    with stream:
        yield stream


def _split_name(name: str) -> tuple[str, str] | None:
    """(key, lower-case suffix) of a member's path, as webdataset splits it; None to skip."""
    folder, _, base = name.rpartition("/")
    if base.startswith((".", "__")) or "." not in base:
        return None
    stem, _, suffix = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), suffix.lower()


def read_shard(source: str) -> Iterator[tuple[str, bytes, int]]:
    """Yield ``(name, image bytes, label)`` of each sample of a shard, in its order.

    ``name`` is ``SOURCE:KEY.SUFFIX``, what error messages call the image. A
    sample without an image or a label, or with a label that is not an
    integer, and a shard that ends inside a member, raise ``ShardError``.
    """
    with open_source(source) as raw:
        key, parts, stream = None, {}, _Tail(raw)
        try:
            for member, data in tar_files(stream):
                split = _split_name(member)
                if split is None:
                    continue
                if split[0] != key:
                    if key is not None:
                        yield _sample(source, key, parts)
                    key, parts = split[0], {}
                parts[split[1]] = data
            while stream.read(1 << 16):  # the padding after the end-of-archive blocks
                pass
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ShardError(f"shard {source} is truncated or not a tar file ({err})") from None
        if stream.tail != bytes(1024):  # cut between two members: the reader just stops
            raise ShardError(f"shard {source} is truncated (it lacks the end-of-archive blocks)")
        if key is not None:
            yield _sample(source, key, parts)


class _Tail:
    """A stream that remembers its last 1024 bytes: a whole tar ends with 1024 zero bytes."""

    def __init__(self, stream) -> None:
        self.stream, self.tail = stream, b""

    def read(self, size: int = -1) -> bytes:
        """Read from the stream, keeping the tail."""
        data = self.stream.read(size)
        self.tail = (self.tail + data[-1024:])[-1024:]
        return data


def _sample(source: str, key: str, parts: dict[str, bytes]) -> tuple[str, bytes, int]:
    suffix = next((s for s in IMAGE_SUFFIXES if s in parts), None)
    if suffix is None:
        raise ShardError(f"shard {source}: sample {key} has no image (.jpg, .png, .webp, .bmp)")
    if "cls" not in parts:
        raise ShardError(f"shard {source}: sample {key} has no label ({key}.cls)")
    try:
        label = int(parts["cls"].decode().strip())
    except ValueError:
        raise ShardError(f"shard {source}: the label of {key} is not an integer") from None
    return f"{source}:{key}.{suffix}", parts[suffix], label


@dataclass(frozen=True)
class ShardSet:
    """The shards of one split: their sources, samples per shard, and the class names."""

    sources: tuple[str, ...]
    counts: tuple[int, ...]
    classes: tuple[str, ...]
    per_class: tuple[int, ...] = ()  # samples per class, when the info file gives them

    def __len__(self) -> int:
        """Samples in all the shards."""
        return sum(self.counts)


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name if _remote(base) else os.path.join(base, name)


def read_info(base: str) -> dict | None:
    """The info file in folder or URL ``base`` (`INFO_NAMES`), or None when there is none."""
    for name in INFO_NAMES:
        source = _join(base, name)
        if not _remote(source) and not os.path.isfile(source):
            continue
        try:
            with open_source(source) as stream:
                text = stream.read()
        except ShardError:  # e.g. a URL folder without this name: try the next
            continue
        return _json_object(source, text)
    return None


def read_info_file(source: str) -> dict:
    """The info file ``source`` names (a path, URL or ``pipe:`` command), read and parsed."""
    with open_source(source) as stream:
        text = stream.read()
    return _json_object(source, text)


def _json_object(source: str, text: bytes) -> dict:
    """``text`` parsed as a JSON object; ``ShardError`` naming ``source`` if it is not one."""
    try:
        found = json.loads(text)
    except ValueError as err:
        raise ShardError(f"{source} is not valid JSON ({err})") from None
    if not isinstance(found, dict):
        raise ShardError(f"{source} is not valid JSON for an info file (not an object)")
    return found


def _shard_name(source: str) -> str:
    """The shard's file name in ``source``, as an info file lists it: a path's or URL's base
    name, or the last ``….tar`` in a ``pipe:`` command."""
    if source.startswith("pipe:"):
        names = re.findall(r"[^/\s'\"]+\.tar\b", source)
        return names[-1] if names else source
    return os.path.basename(source)


def find_shards(spec: str, split: str, named: bool = False, info: dict | None = None) -> ShardSet:
    """The shards of ``split`` ("train" or "val") that ``spec`` names, checked before any work.

    ``spec``: a folder or an ``http(s)://`` folder URL (the shards its info
    file lists, else a folder's ``SPLIT-*.tar``), or a pattern of sources
    (:func:`expand`; local paths, ``pipe:`` and URLs) naming the train shards,
    whose ``val`` shards are those the info file beside them lists, else the
    same pattern with its last "train" read as "val"; ``named``: the pattern
    names this split's shards themselves (a run's ``val_shards``). Counts and classes
    come from the info file beside the shards, or ``info`` (one named apart,
    :func:`read_info_file`: a pattern of commands has none beside it), matched
    by shard file name; a local shard it lists must exist with the size it
    records. Without an info file every shard is read once now, to count it
    and check each sample's label (classes are then the label numbers). Any
    failure: one-line ``ShardError`` naming the shard.
    """
    remote_folder = _remote(spec) and ".tar" not in spec and "{" not in spec
    if remote_folder or os.path.isdir(spec):
        base, info = spec, info or read_info(spec)
        names = ((info or {}).get("splits", {}).get(split) or {}).get("filenames")
        if names is None and remote_folder:
            raise ShardError(f"{spec} has no info.json listing the {split} shards")
        if names is None:
            names = sorted(p.name for p in Path(spec).glob(f"{split}-*.tar"))
        sources = [_join(base, name) for name in names]
    else:
        base = os.path.dirname(spec.split("::")[0])
        if info is None and not (spec.startswith("pipe:") or "::" in spec):
            info = read_info(base)
        listed = ((info or {}).get("splits", {}).get(split) or {}).get("filenames")
        if split == "train" or named:
            sources = expand(spec)
        elif listed is not None and not spec.startswith("pipe:"):  # beside the train shards
            sources = [_join(base, name) for name in listed]
        else:
            head, found, tail = spec.rpartition("train")
            if not found:
                raise ShardError(f"cannot tell the {split} shards from {spec}: no 'train' in it; "
                                 f"name them with the val_shards setting")  # fmt: skip
            try:
                return _counted(info, split, expand(head + split + tail), spec)
            except ShardError as err:  # e.g. fewer val shards than train shards
                raise ShardError(f"{err} (the {split} shards were taken to be {spec} with its "
                                 f"last 'train' read as '{split}'; name them with the "
                                 f"val_shards setting)") from None  # fmt: skip
    return _counted(info, split, sources, spec)


def find_shard_splits(
    spec: str, val_shards: str = "", info_file: str = ""
) -> tuple[ShardSet, ShardSet]:
    """The train and val shards of a run (or of ``deit data``), as :func:`find_shards` finds them.

    ``val_shards``: the val shards named apart (e.g. 50 val shards beside 1,282 train
    shards), else those ``spec`` implies; ``info_file``: the info file named apart (a
    path, URL or ``pipe:`` command), else the one beside the shards. The val shards
    take the train shards' class names: one-line ``ShardError`` if an info file names
    theirs otherwise, or if they hold a label beyond the train shards' classes.
    """
    info = read_info_file(info_file) if info_file else None
    train = find_shards(spec, "train", info=info)
    val = find_shards(val_shards or spec, "val", named=bool(val_shards), info=info)
    named = val.classes != tuple(str(i) for i in range(len(val.classes)))  # not just counted
    if len(val.classes) > len(train.classes) or (
        named and val.classes != train.classes[: len(val.classes)]
    ):
        raise ShardError(f"{val_shards or spec}: the val shards' classes ({_few(val.classes)}) "
                         f"are not the train shards' ({_few(train.classes)})")  # fmt: skip
    return train, dataclasses.replace(val, classes=train.classes)


def _few(classes: tuple[str, ...]) -> str:
    """A class list in a line: its count, and its first names."""
    shown = ", ".join(classes[:3]) + (", ..." if len(classes) > 3 else "")
    return f"{len(classes)}: {shown}"


def _counted(info: dict | None, split: str, sources: list[str], spec: str) -> ShardSet:
    """The ShardSet of ``sources``: from the info file if it lists them all, else counted."""
    if not sources:
        raise ShardError(f"{spec} holds no {split} shards ({split}-*.tar)")
    counted = _from_info(info, split, sources)
    return counted if counted is not None else scan_shards(sources)


def _from_info(info: dict | None, split: str, sources: list[str]) -> ShardSet | None:
    """The ShardSet the info file describes, when it lists every source; sizes checked."""
    entry = ((info or {}).get("splits") or {}).get(split) or {}
    names, lengths = entry.get("filenames", []), entry.get("shard_lengths", [])
    known = dict(zip(names, lengths, strict=False))
    sizes = dict(zip(names, entry.get("shard_bytes", []), strict=False))
    if not known or any(_shard_name(s) not in known for s in sources):
        return None
    for source in sources:
        if _remote(source) or source.startswith("pipe:"):
            continue
        path, name = source.removeprefix("file:"), os.path.basename(source)
        if not os.path.isfile(path):
            raise ShardError(f"shard {path} does not exist (the info file lists it)")
        size = os.path.getsize(path)
        if name in sizes and size != sizes[name]:
            raise ShardError(f"shard {path} is {size} bytes, the info file says {sizes[name]}: "
                             f"truncated or rewritten")  # fmt: skip
    classes = info.get("classes") or [str(i) for i in range(int(info.get("num_classes", 0)))]
    if not classes:
        return None  # labels only: count them by reading the shards
    counts = tuple(int(known[_shard_name(s)]) for s in sources)
    per_class = tuple(entry.get("per_class", ())) if len(sources) == len(names) else ()
    return ShardSet(tuple(sources), counts, tuple(classes), per_class)


def scan_shards(sources: list[str]) -> ShardSet:
    """Read every shard once: count its samples and labels (for shards without an info file).

    Classes are then the labels' numbers, "0" to the largest label read.
    """
    counts, labels = [], []
    for source in sources:
        found = [label for _, _, label in read_shard(source)]
        if not found:
            raise ShardError(f"shard {source} holds no samples")
        counts.append(len(found))
        labels += found
    if min(labels) < 0:
        raise ShardError(f"a label of {sources} is negative ({min(labels)})")
    per_class = np.bincount(labels)
    return ShardSet(tuple(sources), tuple(counts), tuple(str(i) for i in range(len(per_class))),
                    tuple(per_class.tolist()))  # fmt: skip
