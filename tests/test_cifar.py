"""CIFAR reading, checking, downloading, describing and the held-out validation split."""

import builtins
import hashlib
import io
import json
import os
import pickle
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deit.data import (
    CIFAR,
    DataError,
    cifar,
    describe,
    download,
    holdout_validation,
    layout,
    load_cifar,
    resolve_data_dir,
)
from deit.data.augment import CIFAR10_MEAN, CIFAR10_STD
from deit.data.download import Archive, download_cifar

RECORD10 = 1 + 3072

# ----------------------------------------------------------------------------- helpers


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 byte strings, as in the official CIFAR pickles."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_string
    dispatch[str] = save_string


def write_py2_pickle(path, obj):
    """A protocol-2 pickle laid out like the official files (numpy.core globals, byte strings)."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(
        buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    )


def binary_records(images, labels, coarse=None):
    """Official binary records: [coarse byte,] label byte, 3072 pixel bytes."""
    columns = [labels.numpy().astype(np.uint8)[:, None]]
    if coarse is not None:
        columns.insert(0, coarse.astype(np.uint8)[:, None])
    return np.concatenate(columns + [images.reshape(len(images), -1).numpy()], axis=1)


def make_tar(path, members, mode="w:gz"):
    """A tar archive; members maps a name to bytes (file), None (folder) or a TarInfo."""
    with tarfile.open(path, mode) as tar:
        for name, content in members.items():
            if isinstance(content, tarfile.TarInfo):
                tar.addfile(content)
            elif content is None:
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def archive_at(monkeypatch):
    """Point the CIFAR-10 archive table entry at a local file:// URL with the given MD5."""

    def point(path, checksum=None):
        entry = Archive(path.as_uri(), checksum or md5(path))
        monkeypatch.setitem(download.ARCHIVES, "cifar10", entry)
        return entry

    return point


# ----------------------------------------------------------------------------- real CIFAR-10


def test_real_cifar10_has_the_published_shape_and_statistics(cifar10):
    d = cifar10
    assert d.name == "cifar10" and d.root.name == "cifar-10-batches-bin"
    assert d.train_images.shape == (50000, 3, 32, 32) and d.test_images.shape == (10000, 3, 32, 32)
    assert d.train_images.dtype == torch.uint8 and d.train_labels.dtype == torch.int64
    assert d.train_images.is_contiguous() and d.test_images.is_contiguous()
    assert torch.bincount(d.train_labels).tolist() == [5000] * 10
    assert torch.bincount(d.test_labels).tolist() == [1000] * 10
    channels = d.train_images.numpy().transpose(1, 0, 2, 3).reshape(3, -1)
    mean = channels.sum(axis=1, dtype=np.uint64) / channels.shape[1] / 255
    assert np.allclose(mean, [0.4914, 0.4822, 0.4465], atol=1e-3)
    assert d.num_classes == 10 and d.classes[0] == "airplane" and d.classes[-1] == "truck"


def test_real_cifar10_loads_in_under_3_seconds(cifar_dir):
    start = time.perf_counter()
    load_cifar("cifar10", cifar_dir, download=False)
    assert time.perf_counter() - start < 3.0


def test_describe_reports_the_real_cifar10(cifar_dir):
    report = describe("cifar10", cifar_dir, download=False)
    assert json.loads(json.dumps(report)) == report
    assert report["dataset"] == "cifar10"
    assert report["root"] == str(cifar_dir / "cifar-10-batches-bin")
    assert (report["train"], report["test"]) == (50000, 10000)
    assert report["classes"][0] == "airplane" and len(report["classes"]) == 10
    assert report["train_per_class"] == [5000] * 10
    assert np.allclose(report["mean"], CIFAR10_MEAN, atol=1e-3)
    assert np.allclose(report["std"], CIFAR10_STD, atol=1e-3)
    assert 0 <= report["load_seconds"] < 60


def test_dataset_names_are_normalised_and_checked(cifar_dir, cifar10):
    assert load_cifar("CIFAR-10", cifar_dir, download=False).name == "cifar10"
    with pytest.raises(ValueError, match="cifar10"):
        load_cifar("mnist", cifar_dir)


def test_python_layout_reads_like_the_binary_layout(tmp_path, cifar10, cifar_dir):
    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    flat = cifar10.train_images.reshape(5, 10000, 3072).numpy()
    for i in range(5):
        labels = cifar10.train_labels[i * 10000 : (i + 1) * 10000].tolist()
        write_py2_pickle(py / f"data_batch_{i + 1}", {b"data": flat[i], b"labels": labels})
    test = {
        b"data": cifar10.test_images.reshape(10000, 3072).numpy(),
        b"labels": cifar10.test_labels.tolist(),
    }
    write_py2_pickle(py / "test_batch", test)
    names = [n.encode() for n in cifar10.classes]
    write_py2_pickle(py / "batches.meta", {b"label_names": names, b"num_vis": 3072})

    d = load_cifar("cifar10", tmp_path, download=False)
    assert d.root == py and d.classes == cifar10.classes
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(d, field), getattr(cifar10, field)), field
    assert d.train_images.is_contiguous() and d.train_images.dtype == torch.uint8

    (tmp_path / "cifar-10-batches-bin").symlink_to(cifar_dir / "cifar-10-batches-bin")
    assert load_cifar("cifar10", tmp_path, download=False).root.name == "cifar-10-batches-bin"


def test_python3_protocol2_pickle_with_str_keys_is_read(tmp_path):
    data = (np.arange(100 * 3072) % 251).astype(np.uint8).reshape(100, 3072)
    labels = np.arange(100) * 7 % 10
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": data, "labels": list(labels)}, protocol=2))
    images, got = cifar._read_python_file(layout.SPECS["cifar10"], path, 100)
    assert np.array_equal(images.reshape(100, 3072), data) and np.array_equal(got, labels)


# ----------------------------------------------------------------------------- bad files


class _Payload:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("func", [os.system, builtins.eval])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, func):
    marker = tmp_path / "pwned"
    command = f"touch {marker}" if func is os.system else f"open({str(marker)!r}, 'w')"
    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    (py / "data_batch_1").write_bytes(pickle.dumps({b"data": _Payload(func, command)}, protocol=2))
    with pytest.raises(DataError, match="refused to unpickle global") as err:
        load_cifar("cifar10", tmp_path, download=False)
    assert "data_batch_1" in str(err.value) and func.__name__ in str(err.value)
    assert not marker.exists()


def test_object_arrays_in_pickles_are_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": np.array([1, "x"], dtype=object)}, protocol=2))
    with pytest.raises(DataError, match="data_batch_1.*object dtype"):
        cifar._read_pickle(path)


def test_pickle_array_of_wrong_shape_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    data = np.zeros((10, 3072), np.uint8)
    path.write_bytes(pickle.dumps({"data": data, "labels": [0] * 10}, protocol=2))
    with pytest.raises(
        DataError, match=r"data_batch_1: 'data' is uint8 array of shape \(10, 3072\)"
    ):
        cifar._read_python_file(layout.SPECS["cifar10"], path, 10000)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (10000 * RECORD10 - 100, "not a whole number of 3073-byte records"),
        (9999 * RECORD10, "holds 9999 records, expected 10000"),
    ],
)
def test_wrong_sized_binary_file_is_refused(tmp_path, size, message):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "data_batch_1.bin").write_bytes(bytes(size))
    with pytest.raises(DataError, match=message) as err:
        load_cifar("cifar10", tmp_path, download=False)
    assert "data_batch_1.bin" in str(err.value)


def test_out_of_range_label_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    records = np.zeros((10000, RECORD10), np.uint8)
    records[7, 0] = 10
    records.tofile(folder / "data_batch_1.bin")
    with pytest.raises(
        DataError, match=r"data_batch_1.bin: label 10 at record 7 is out of range 0..9"
    ):
        load_cifar("cifar10", tmp_path, download=False)


def test_missing_file_and_wrong_class_names_are_refused(tmp_path, cifar_dir):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    with pytest.raises(DataError, match="data_batch_1.bin: file is missing"):
        load_cifar("cifar10", tmp_path, download=False)
    for f in (cifar_dir / "cifar-10-batches-bin").glob("*.bin"):
        (folder / f.name).symlink_to(f)
    (folder / "batches.meta.txt").write_text("cat\ndog\n")
    with pytest.raises(DataError, match="batches.meta.txt: 2 class names, expected 10"):
        load_cifar("cifar10", tmp_path, download=False)


def test_missing_directory_without_download_says_where_and_how(tmp_path):
    where = tmp_path / "nothing"
    with pytest.raises(DataError) as err:
        load_cifar("cifar10", where, download=False)
    message = str(err.value)
    for part in (
        str(where),
        "cifar-10-batches-bin/",
        "cifar-10-batches-py/",
        "--data-dir",
        "DEIT_DATA",
        "download is disabled",
    ):
        assert part in message, part


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("DEIT_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("DEIT_DATA")
    assert resolve_data_dir() == tmp_path / "xdg" / "deit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "deit"


# ----------------------------------------------------------------------------- download


def test_download_verifies_md5_and_extracts(tmp_path, archive_at):
    archive = make_tar(
        tmp_path / "cifar-10-binary.tar.gz",
        {"cifar-10-batches-bin": None, "cifar-10-batches-bin/a.txt": b"hello"},
    )
    archive_at(archive)
    data = tmp_path / "data"
    folder = download_cifar("cifar10", data)
    assert folder == data / "cifar-10-batches-bin" and (folder / "a.txt").read_bytes() == b"hello"
    assert sorted(p.name for p in data.iterdir()) == [
        "cifar-10-batches-bin",
        "cifar-10-binary.tar.gz",
    ]


def test_download_with_wrong_md5_is_discarded(tmp_path, archive_at):
    archive = make_tar(tmp_path / "cifar-10-binary.tar.gz", {"cifar-10-batches-bin/a.txt": b"x"})
    archive_at(archive, "0" * 32)
    data = tmp_path / "data"
    with pytest.raises(DataError, match=f"MD5 {md5(archive)}, expected 0{{32}}"):
        download_cifar("cifar10", data)
    assert list(data.iterdir()) == []


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    ("member", "why"),
    [
        ("../evil", "'..' in path"),
        ("/tmp/evil", "absolute path"),
        ("cifar-10-batches-bin/x/../../../evil", "'..' in path"),
        (_link("cifar-10-batches-bin/evil", "/etc/passwd"), "link"),
        (_link("cifar-10-batches-bin/evil", "/etc/passwd", tarfile.LNKTYPE), "link"),
    ],
)
def test_unsafe_archive_members_are_refused(tmp_path, archive_at, member, why):
    name = member if isinstance(member, str) else member.name
    archive = make_tar(
        tmp_path / "cifar-10-binary.tar.gz",
        {
            "cifar-10-batches-bin/a.txt": b"ok",
            name: member if not isinstance(member, str) else b"evil",
        },
    )
    archive_at(archive)
    data = tmp_path / "data"
    with pytest.raises(DataError, match="refusing unsafe archive member") as err:
        download_cifar("cifar10", data)
    assert why in str(err.value)
    assert not (tmp_path / "evil").exists() and not (data / "cifar-10-batches-bin").exists()
    assert not any(p.name.startswith(".extract") for p in data.iterdir())


def test_network_failure_names_directory_and_fix(tmp_path, archive_at):
    archive_at(tmp_path / "absent.tar.gz", "0" * 32)
    with pytest.raises(DataError) as err:
        load_cifar("cifar10", tmp_path / "data")
    message = str(err.value)
    assert "downloading file://" in message and str(tmp_path / "data") in message
    assert "--data-dir" in message and "DEIT_DATA" in message
    assert not any((tmp_path / "data").iterdir())


def test_load_downloads_when_missing(tmp_path, cifar_dir, cifar10, monkeypatch):
    """End to end: missing data → fetch (monkeypatched) → MD5 → extract → verified load."""
    source = tmp_path / "source.tar"
    with tarfile.open(source, "w") as tar:  # uncompressed: fast; the reader takes any tar
        tar.add(cifar_dir / "cifar-10-batches-bin", "cifar-10-batches-bin")
    monkeypatch.setitem(
        download.ARCHIVES, "cifar10", Archive("https://example.invalid/c.tar.gz", md5(source))
    )
    fetched = []

    def fetch(url, dest):
        fetched.append(url)
        os.link(source, dest)  # a hard link: the "download" costs nothing

    monkeypatch.setattr(download, "fetch_url", fetch)  # the name download_cifar looks up
    d = load_cifar("cifar10", tmp_path / "data")
    assert fetched == ["https://example.invalid/c.tar.gz"]
    assert d.root == tmp_path / "data" / "cifar-10-batches-bin"
    assert torch.equal(d.train_labels, cifar10.train_labels)
    assert torch.equal(d.test_images, cifar10.test_images)


def _synthetic100(n, offset=0):
    """Images that encode their index, fine labels i % 100, and coarse labels that differ."""
    idx = torch.arange(offset, offset + n)
    images = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    images[:, 0, 1, 2] = (idx % 256).to(torch.uint8)
    images[:, 2, 31, 31] = (idx // 256 % 256).to(torch.uint8)
    return images, idx % 100, (idx.numpy() * 7 + 3) % 20


def test_cifar100_binary_takes_the_fine_labels(tmp_path):
    train, test = _synthetic100(50000), _synthetic100(10000, 50000)
    names = [f"c{i}" for i in range(100)]
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    binary_records(*train).tofile(folder / "train.bin")
    binary_records(*test).tofile(folder / "test.bin")
    (folder / "fine_label_names.txt").write_text("\n".join(names) + "\n")
    d = load_cifar("cifar100", tmp_path, download=False)
    assert d.root == folder and d.num_classes == 100 and d.classes == tuple(names)
    assert torch.equal(d.train_images, train[0]) and torch.equal(d.test_images, test[0])
    assert torch.equal(d.train_labels, train[1]) and torch.equal(d.test_labels, test[1])


def test_cifar100_python_files_give_the_fine_labels(tmp_path):
    """The python-layout readers on small files (load_cifar itself insists on 50000 records)."""
    spec, (images, fine, coarse) = layout.SPECS["cifar100"], _synthetic100(200)
    entry = {
        b"data": images.reshape(200, -1).numpy(),
        b"fine_labels": fine.tolist(),
        b"coarse_labels": coarse.tolist(),
    }
    write_py2_pickle(tmp_path / "train", entry)
    got_images, got_labels = cifar._read_python_file(spec, tmp_path / "train", 200)
    assert np.array_equal(got_images, images.numpy()) and np.array_equal(got_labels, fine.numpy())
    names = [f"c{i}".encode() for i in range(100)]
    write_py2_pickle(
        tmp_path / "meta", {b"fine_label_names": names, b"coarse_label_names": names[:20]}
    )
    assert cifar._read_python_names(spec, tmp_path / "meta") == tuple(f"c{i}" for i in range(100))


def test_cifar100_train_file_needs_50000_records(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(bytes(10000 * 3074))
    with pytest.raises(DataError, match="train.bin: holds 10000 records, expected 50000"):
        load_cifar("cifar100", tmp_path, download=False)


# ----------------------------------------------------------------------------- validation split


def _indexed(per_class=100, num_classes=10):
    """A synthetic CIFAR whose image i carries i in its first two pixel bytes."""
    n = per_class * num_classes
    idx = torch.arange(n)
    images = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = idx % 256, idx // 256
    labels = torch.randperm(n, generator=torch.Generator().manual_seed(1)) % num_classes
    classes = tuple(str(c) for c in range(num_classes))
    return CIFAR("cifar10", Path("."), images, labels, images[:10], labels[:10], classes)


def _ids(images):
    return images[:, 0, 0, 0].long() + 256 * images[:, 0, 0, 1].long()


def test_holdout_is_balanced_disjoint_and_complete():
    data = _indexed()
    split = holdout_validation(data, size=200, seed=3)
    held, kept = _ids(split.test_images), _ids(split.train_images)
    assert torch.bincount(split.test_labels).tolist() == [20] * 10
    assert len(set(held.tolist()) & set(kept.tolist())) == 0
    assert sorted(held.tolist() + kept.tolist()) == list(range(1000))
    assert held.tolist() == sorted(held.tolist()) and kept.tolist() == sorted(kept.tolist())
    assert torch.equal(split.test_labels, data.train_labels[held])
    assert torch.equal(split.train_labels, data.train_labels[kept])
    assert split.classes == data.classes and split.name == data.name


def test_holdout_is_deterministic_by_seed():
    data = _indexed()
    a, b, c = (holdout_validation(data, 200, seed=s) for s in (0, 0, 1))
    assert torch.equal(_ids(a.test_images), _ids(b.test_images))
    assert not torch.equal(_ids(a.test_images), _ids(c.test_images))


@pytest.mark.parametrize("size", [0, 205, 1010])
def test_holdout_rejects_bad_sizes(size):
    with pytest.raises(ValueError, match=str(size)):
        holdout_validation(_indexed(), size=size)


def test_holdout_on_real_cifar10(cifar10):
    split = holdout_validation(cifar10)
    assert len(split.train_labels) == 45000 and len(split.test_labels) == 5000
    assert torch.bincount(split.test_labels).tolist() == [500] * 10
    assert split.test_images.is_contiguous() and split.train_images.is_contiguous()


def test_truncate_takes_the_first_rows_and_zero_means_all(cifar10):
    from deit.data import truncate

    part = truncate(cifar10, test_size=100)
    assert torch.equal(part.test_images, cifar10.test_images[:100])
    assert torch.equal(part.test_labels, cifar10.test_labels[:100])
    assert part.train_images is cifar10.train_images
    assert len(truncate(cifar10).test_labels) == len(cifar10.test_labels) == 10000
