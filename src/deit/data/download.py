"""Download, verify and extract the official CIFAR archives.

An archive is streamed to a temporary name, its MD5 checked, and only then renamed into the
data directory; it is extracted member by member into a scratch folder (no absolute paths,
'..', links or special files) that is moved into place only when the whole archive
extracted. `load_cifar` calls `download_cifar` when the data set is not on disk.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deit.data.layout import DataError, Spec, not_found, resolve_data_dir, spec_of

__all__ = ["ARCHIVES", "Archive", "download_cifar", "extract_archive", "fetch_url"]


@dataclass(frozen=True)
class Archive:
    """Where an official archive lives and the MD5 it must have."""

    url: str
    md5: str

    @property
    def filename(self) -> str:
        """The archive's file name, as it is kept in the data directory."""
        return self.url.rsplit("/", 1)[-1]


# Official archives (binary layout). Module-level so tests and mirrors can replace entries.
ARCHIVES: dict[str, Archive] = {
    "cifar10": Archive(
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        "c32a1d4ab5d03f1284b67883e8d87530",
    ),
    "cifar100": Archive(
        "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        "03b5dce01913d631647c71ecec9e9cb8",
    ),
}


def fetch_url(url: str, dest: Path) -> None:
    """Stream `url` into the file `dest` with a progress bar (any urllib scheme, file:// too)."""
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_verified(spec: Spec, archive: Archive, dest: Path, fetch: Callable) -> None:
    """Download to a temporary name, check the MD5, then rename: `dest` is always whole."""
    part = dest.with_name(f"{dest.name}.{os.getpid()}.part")
    try:
        fetch(archive.url, part)
    except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as e:
        part.unlink(missing_ok=True)
        why = f"downloading {archive.url} failed ({type(e).__name__}: {e})"
        raise not_found(spec, dest.parent, why) from e
    got = _md5(part)
    if got != archive.md5:
        part.unlink(missing_ok=True)
        raise DataError(
            f"{archive.url}: downloaded file has MD5 {got}, expected {archive.md5}; it was "
            f"discarded. Retry, or place the data in {dest.parent} yourself (see --data-dir)."
        )
    part.replace(dest)


def download_cifar(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, fetch: Callable | None = None
) -> Path:
    """Download, verify and extract the official binary archive; return its layout folder.

    An archive already present in the data directory is reused if its MD5 matches. `fetch`
    (default: `fetch_url`) is injectable so tests and mirrors need no network.
    """
    key, spec = spec_of(name)
    directory = resolve_data_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    archive = ARCHIVES[key]
    dest = directory / archive.filename
    if not dest.exists():
        _fetch_verified(spec, archive, dest, fetch or fetch_url)
    elif (got := _md5(dest)) != archive.md5:
        raise DataError(
            f"{dest}: MD5 {got}, expected {archive.md5}; delete the file and retry the download"
        )
    return extract_archive(dest, directory, spec.bin_folder)


def _check_member(archive: Path, member: tarfile.TarInfo, target: Path) -> PurePosixPath:
    """Refuse any tar member that could write outside `target` or is not a plain file/folder."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        why = "absolute path" if path.is_absolute() else "'..' in path"
    elif not (member.isfile() or member.isdir()):
        why = "link or special file"
    elif not (target / path).resolve().is_relative_to(target.resolve()):
        why = "path outside the target folder"
    else:
        return path
    raise DataError(f"{archive}: refusing unsafe archive member {member.name!r} ({why})")


def _extract_members(archive: Path, target: Path) -> None:
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            out = target / _check_member(archive, member, target)
            if member.isdir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            assert src is not None  # regular file
            with src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def extract_archive(archive: Path, directory: Path, folder: str) -> Path:
    """Safely extract `folder` from a tar archive into `directory` and return its path.

    Members are checked one by one (no absolute paths, '..', links or special files) and
    written as plain files into a scratch folder, which is moved into place only when the
    whole archive extracted: a failure leaves nothing half-written behind.
    """
    archive, directory = Path(archive), Path(directory)
    scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=directory))
    try:
        _extract_members(archive, scratch)
        if not (scratch / folder).is_dir():
            raise DataError(f"{archive}: holds no folder {folder}/")
        (scratch / folder).rename(directory / folder)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(
            f"{archive}: cannot extract into {directory} ({type(e).__name__}: {e})"
        ) from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return directory / folder
