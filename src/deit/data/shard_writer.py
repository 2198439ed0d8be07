"""WebDataset shards written from an image folder: the ``shards`` export.

What this room holds: :func:`write_shards`, which turns an image folder
(``train/``, ``val/``) into ``train-00000.tar``, ... ``val-...`` and an
``info.json`` in the format :mod:`deit.data.shards` reads (and timm's
``wds/`` and webdataset read), byte for byte the same for the same folder
and arguments.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

from deit.data.folder import scan_folder
from deit.data.shards import ShardError


def write_shards(
    root: str | Path, out: str | Path, *, per_shard: int = 1000, seed: int = 0
) -> dict:
    """Write image folder ``root`` (``train/``, ``val/``) as shards in ``out``; return the info.

    ``out/train-00000.tar``, ... and ``val-00000.tar``, ..., ``per_shard``
    samples each (the last one fewer), in a seeded random order so that
    every shard mixes the classes (a sequential reader's buffer shuffle only
    mixes nearby samples). A sample is ``<index>.jpg`` (the file's bytes as
    they are: a JPEG under any of its endings; another format keeps its own
    suffix, ``.png``, ``.webp``, ``.bmp``) and ``<index>.cls`` (the label);
    ``index`` is the image's place in the folder's sorted listing. Then
    ``out/info.json``: class names, and for each split the shard names,
    samples per shard, bytes per shard and images per class. The same
    folder and arguments give the same bytes.
    """
    if per_shard < 1:
        raise ShardError(f"per_shard must be at least 1, got {per_shard}")
    folder, out = scan_folder(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = {"name": folder.root.name, "classes": list(folder.classes), "splits": {}}
    for number, split in enumerate(("train", "val")):
        samples = getattr(folder, split)
        order = np.random.default_rng([seed, number]).permutation(len(samples)).tolist()
        entry = {"name": split, "num_samples": len(samples), "per_class": folder.per_class(split),
                 "filenames": [], "shard_lengths": [], "shard_bytes": []}  # fmt: skip
        for start in range(0, len(order), per_shard):
            name = f"{split}-{start // per_shard:05d}.tar"
            with tarfile.open(out / name, "w", format=tarfile.USTAR_FORMAT) as tar:
                for index in order[start : start + per_shard]:
                    path, label = samples[index]
                    suffix = Path(path).suffix.lower().lstrip(".")
                    suffix = "jpg" if suffix == "jpeg" else suffix
                    _add(tar, f"{index:08d}.{suffix}", Path(path).read_bytes())
                    _add(tar, f"{index:08d}.cls", str(label).encode())
            entry["filenames"].append(name)
            entry["shard_lengths"].append(len(order[start : start + per_shard]))
            entry["shard_bytes"].append((out / name).stat().st_size)
        info["splits"][split] = entry
    (out / "info.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """One member with fixed metadata (mode 0444, time 0), so the bytes are reproducible."""
    member = tarfile.TarInfo(name)
    member.size, member.mode, member.mtime = len(data), 0o444, 0
    tar.addfile(member, io.BytesIO(data))
