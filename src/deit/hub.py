"""Official DeiT weights by name: ``--checkpoint deit_tiny_distilled_patch16_224``.

What this room holds today:

- :data:`OFFICIAL`: the eight ImageNet-1k checkpoints of facebookresearch/deit
  (those timm's ``deit_*`` models load), name → URL.
- :func:`fetch`: the file of a name, downloaded once into the cache
  (``$DEIT_WEIGHTS``, else ``$XDG_CACHE_HOME/deit/weights``, else
  ``~/.cache/deit/weights``) with a progress bar and its SHA-256 checked
  against the prefix in the official file name (torch.hub's convention). A
  partial or corrupt download is deleted, never used, and the next try
  starts from scratch. Offline (or ``download=False``), one line gives the
  URL to fetch by hand and the path to put it at.
- :data:`CROP_PCT` and :func:`imagenet_classes`: what :func:`deit.load` needs
  beside the weights to classify with an official checkpoint.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from deit.checkpoint import CheckpointError

_BASE = "https://dl.fbaipublicfiles.com/deit/"
OFFICIAL = {
    "deit_tiny_patch16_224": _BASE + "deit_tiny_patch16_224-a1311bcf.pth",
    "deit_small_patch16_224": _BASE + "deit_small_patch16_224-cd65a155.pth",
    "deit_base_patch16_224": _BASE + "deit_base_patch16_224-b5f2ef4d.pth",
    "deit_tiny_distilled_patch16_224": _BASE + "deit_tiny_distilled_patch16_224-b40b3cf7.pth",
    "deit_small_distilled_patch16_224": _BASE + "deit_small_distilled_patch16_224-649709d9.pth",
    "deit_base_distilled_patch16_224": _BASE + "deit_base_distilled_patch16_224-df68dfff.pth",
    "deit_base_patch16_384": _BASE + "deit_base_patch16_384-8de9b5d1.pth",
    "deit_base_distilled_patch16_384": _BASE + "deit_base_distilled_patch16_384-d0272ac0.pth",
}
"""Official DeiT checkpoints (ImageNet-1k, 1000 classes): name → URL. Each file name ends in
the first 8 hex digits of its SHA-256, which :func:`fetch` checks."""

CROP_PCT = {224: 0.875, 384: 1.0}
"""The evaluation crop of the official models by image size (DeiT's and timm's)."""

IMAGENET_CLASSES = Path(__file__).resolve().parent / "weights" / "imagenet1k-classes.txt"
"""ImageNet-1k's classes in logit order: WordNet id, tab, lemmas (as timm lists them)."""

CHUNK = 1 << 20


def is_official(name: str) -> bool:
    """Whether ``name`` is one of :data:`OFFICIAL`'s names."""
    return name in OFFICIAL


def cache_dir() -> Path:
    """Where downloaded weights are kept: ``$DEIT_WEIGHTS``, else ``<user cache>/deit/weights``."""
    if os.environ.get("DEIT_WEIGHTS"):
        return Path(os.environ["DEIT_WEIGHTS"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "deit" / "weights"


def expected_hash(url: str) -> str:
    """The SHA-256 prefix a file name carries (``name-<hex>.pth``), as torch.hub reads it."""
    stem = url.rsplit("/", 1)[-1].split(".")[0]
    return stem.rsplit("-", 1)[-1] if "-" in stem else ""


def fetch(
    name: str, *, download: bool = True, cache: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:  # fmt: skip
    """The local file of official checkpoint ``name``, downloaded into the cache if missing.

    Raises a one-line :class:`CheckpointError` for an unknown name (listing
    the known ones) and, when the file is missing and cannot be downloaded
    (offline, ``download=False``, a bad checksum), one that gives the URL to
    fetch by hand and the path to put it at.
    """
    if name not in OFFICIAL:
        raise CheckpointError(f"unknown official DeiT name {name!r}; known: {', '.join(OFFICIAL)}")
    url = OFFICIAL[name]
    dest = Path(cache).expanduser() if cache else cache_dir()
    dest = dest / url.rsplit("/", 1)[-1]
    if dest.is_file():
        return dest
    by_hand = f"fetch {url} by hand and put it at {dest}"
    if not download:
        raise CheckpointError(f"{name} is not in the cache and downloading is off: {by_hand}")
    try:
        download_file(url, dest, expected_hash(url), progress=progress)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot download {name} ({err}): {by_hand}") from None
    return dest


def download_file(url: str, dest: Path, sha256_prefix: str, *, progress: bool = True) -> None:
    """Download ``url`` to ``dest`` through a temporary file; keep it only if complete and right.

    The bytes go to ``dest``'s folder under a name of this process, with a
    tqdm bar on stderr; a short read (fewer bytes than Content-Length) or a
    SHA-256 that does not start with ``sha256_prefix`` raises ``ValueError``,
    any transfer failure ``OSError``; in every failure the temporary file is
    deleted, so nothing partial is ever read and the next try starts clean.
    Only a whole, verified file is renamed to ``dest`` (atomically).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f"{dest.name}.{os.getpid()}.part")
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, desc=dest.name, unit="B", unit_scale=True, file=sys.stderr,
                      disable=not progress or None, mininterval=0.5) as bar:  # fmt: skip
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
        if total is not None and size != total:
            raise ValueError(f"incomplete: {size} of {total} bytes")
        if not digest.hexdigest().startswith(sha256_prefix):
            raise ValueError(
                f"SHA-256 {digest.hexdigest()[:16]}... does not start with {sha256_prefix}"
            )
        os.replace(part, dest)
    except (urllib.error.URLError, http.client.HTTPException) as err:
        raise OSError(str(getattr(err, "reason", None) or err) or type(err).__name__) from None
    finally:
        part.unlink(missing_ok=True)


def imagenet_classes() -> tuple[str, ...]:
    """ImageNet-1k's class names in logit order: WordNet lemmas, e.g. "tench, Tinca tinca"."""
    lines = IMAGENET_CLASSES.read_text(encoding="utf-8").splitlines()
    return tuple(line.split("\t", 1)[1] for line in lines)
