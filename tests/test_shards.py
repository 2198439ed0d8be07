"""WebDataset shards: the export, the sources (folder, pattern, pipe:, http), the seeded order,
the rank split, exact resume, training from shards, and each failure as one line."""

import functools
import hashlib
import http.server
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from stop_and_resume import DeitProcess, saved_step, wait_for_step

from deit.cli import main
from deit.data.export import main as export_main
from deit.data.folder import scan_folder
from deit.data.layout import DataError
from deit.data.packing import SlotPool
from deit.data.shard_loader import ShardLoader
from deit.data.shard_order import epoch_plan
from deit.data.shard_writer import write_shards
from deit.data.shards import (
    ShardError,
    expand,
    find_shard_splits,
    find_shards,
    read_info_file,
)
from deit.data.stream import StreamLoader

CLASSES = ("ant", "bee", "cat")
TINY = ["--preset", "smoke", "--set", "dataset=shards", "--set", "threads=1",
        "--set", "train_size=0", "--set", "test_size=0", "--set", "batch_size=8",
        "--set", "workers=0", "--set", "shard_buffer=4"]  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes: 12 train and 4 val images each, 16–32 px, JPEG and PNG, random pixels."""
    root, rng = tmp_path_factory.mktemp("folder") / "root", np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 4)):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                height, width = rng.integers(16, 33, size=2)
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(
                    root / split / name / f"{i}.{'png' if i % 3 else 'jpg'}"
                )
    return root


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory):
    """The folder as shards of 5 samples: 8 train shards (the last holds 1), 3 val shards."""
    out = tmp_path_factory.mktemp("shards") / "wds"
    write_shards(folder, out, per_shard=5)
    return out


@pytest.fixture(scope="module")
def server(shards):
    """An HTTP server on localhost serving the shards' folder; its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(shards.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no line per request on stderr
        pass


def _digests(loader) -> list[str]:
    pairs = (
        (image, label)
        for images, labels in loader
        for image, label in zip(images, labels, strict=True)
    )
    return sorted(hashlib.sha1(image.numpy().tobytes()).hexdigest() + f":{int(label)}"
                  for image, label in pairs)  # fmt: skip


def test_the_export_writes_train_and_val_shards_with_an_info_file(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        export_main(["shards", "--from", str(folder), "--out", str(out), "--per-shard", "5"]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == (
        ["info.json", *(f"train-{i:05d}.tar" for i in range(8)),
         *(f"val-{i:05d}.tar" for i in range(3))]
    )  # fmt: skip
    info = json.loads((out / "info.json").read_text())
    assert info["classes"] == list(CLASSES)
    assert info["splits"]["train"]["shard_lengths"] == [5] * 7 + [1]
    assert info["splits"]["train"]["per_class"] == [12, 12, 12]
    assert info["splits"]["val"]["num_samples"] == 12
    with tarfile.open(out / "train-00000.tar") as tar:  # .jpg/.png + .cls, key by key
        names = tar.getnames()
    assert [n.split(".", 1)[1] for n in names[1::2]] == ["cls"] * 5
    assert {n.split(".", 1)[1] for n in names[::2]} <= {"jpg", "png"}
    again = tmp_path / "again"
    assert (
        export_main(["shards", "--from", str(folder), "--out", str(again), "--per-shard", "5"]) == 0
    )
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in again.iterdir())
    capsys.readouterr()
    assert export_main(["shards", "--from", str(folder), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith("is not empty; pass --overwrite to replace it")


def test_brace_patterns_expand_like_webdataset():
    assert expand("a-{08..10}.tar") == ["a-08.tar", "a-09.tar", "a-10.tar"]
    assert expand("{x,y}/{0..1}::z") == ["x/0", "x/1", "y/0", "y/1", "z"]


@pytest.mark.parametrize("source", ["folder", "pattern", "pipe", "http"])
def test_shards_hold_exactly_the_images_of_their_folder(folder, shards, server, source):
    spec = {"folder": str(shards), "pattern": f"{shards}/train-{{00000..00007}}.tar",
            "pipe": f"pipe:cat {shards}/train-{{00000..00007}}.tar",
            "http": f"{server}/{shards.name}/"}[source]  # fmt: skip
    found = find_shards(spec, "train")
    names = ("0", "1", "2") if source == "pipe" else CLASSES  # pipe: no info file, labels only
    assert found.classes == names and found.counts == (5,) * 7 + (1,)
    read = ShardLoader(found, 7, size=24, mode="plain", shuffle=False, drop_last=False)
    samples = scan_folder(folder).train
    plain = StreamLoader(samples, 7, size=24, mode="plain", shuffle=False, drop_last=False)
    assert _digests(read) == _digests(plain)  # the same pixels and labels, each image once
    labels = torch.cat([labels for _, labels in read])
    assert sorted(Counter(labels.tolist()).values()) == scan_folder(folder).per_class("train")
    if source == "pipe":  # no info file: the val shards are the pattern's, 3 of them exist
        with pytest.raises(
            ShardError,
            match=r"val-00003.tar: the command exited with status 1 "
            r"\(the val shards were taken to be .* name them with the val_shards",
        ):
            find_shards(spec, "val")
        named = find_shards(f"pipe:cat {shards}/val-{{00000..00002}}.tar", "val", named=True)
        assert len(named) == 12 and named.counts == (5, 5, 2)
    else:
        assert len(find_shards(spec, "val")) == 12


def test_shards_written_by_webdatasets_own_writer_read_the_same(folder, tmp_path):
    wds = pytest.importorskip("webdataset")
    samples = scan_folder(folder).train
    with wds.ShardWriter(str(tmp_path / "train-%05d.tar"), maxcount=10, verbose=0) as sink:
        for i, (path, label) in enumerate(samples):
            with open(path, "rb") as image:
                sink.write({"__key__": f"s{i:04d}", "jpg": image.read(), "cls": label})
    found = find_shards(str(tmp_path), "train")  # no info file: read once, counted
    assert found.counts == (10, 10, 10, 6) and found.classes == ("0", "1", "2")
    read = ShardLoader(found, 9, size=24, mode="plain", shuffle=False, drop_last=False)
    plain = StreamLoader(samples, 9, size=24, mode="plain", shuffle=False, drop_last=False)
    assert _digests(read) == _digests(plain)


def test_the_order_is_the_seeds_and_ranks_read_disjoint_shards():
    counts = (5,) * 7 + (1,)
    plan = functools.partial(epoch_plan, counts, buffer=4)
    assert np.array_equal(plan(seed=0, epoch=1)[0], plan(seed=0, epoch=1)[0])
    assert not np.array_equal(plan(seed=0, epoch=1)[0], plan(seed=0, epoch=2)[0])
    assert not np.array_equal(plan(seed=0, epoch=1)[0], plan(seed=1, epoch=1)[0])
    assert sorted(plan(seed=0, epoch=1)[0].tolist()) == list(range(36))
    ranks = [plan(seed=3, epoch=0, rank=r, world_size=2)[0] for r in (0, 1)]
    assert sorted(np.concatenate(ranks).tolist()) == list(range(36))  # each sample once
    shard_of = [set((ids // 5).tolist()) for ids in ranks]  # ids 0-34: shards 0-6; 35: shard 7
    assert not shard_of[0] & shard_of[1]  # a shard belongs to one rank


def test_a_resumed_epoch_is_bit_identical_with_any_number_of_workers(shards):
    found = find_shards(str(shards), "train")
    whole = ShardLoader(found, 8, size=16, seed=5, buffer=3)
    whole.set_epoch(1)
    batches = list(whole)
    assert len(batches) == len(whole) == 4  # 36 samples: whole batches of 8
    resumed = ShardLoader(found, 8, size=16, seed=5, buffer=3, workers=2)
    resumed.set_epoch(1)
    rest = list(resumed.iter_from(2))
    resumed.close()
    assert len(rest) == 2
    for (images, labels), (again, again_labels) in zip(batches[2:], rest, strict=True):
        assert torch.equal(images, again) and torch.equal(labels, again_labels)


def test_the_gpu_path_over_shards_is_exact_across_workers_and_resume(shards):
    """Workers decode and crop, the loader resizes each batch (forced here on the CPU)."""
    found = find_shards(str(shards), "train")
    kwargs = dict(size=16, seed=5, buffer=3)
    on_device = ShardLoader(found, 8, resize_on_device=True, **kwargs)
    on_device.set_epoch(1)
    batches = list(on_device)
    resumed = ShardLoader(found, 8, resize_on_device=True, workers=2, **kwargs)
    resumed.set_epoch(1)
    rest = list(resumed.iter_from(2))
    resumed.close()
    for (images, labels), (again, again_labels) in zip(batches[2:], rest, strict=True):
        assert torch.equal(images, again) and torch.equal(labels, again_labels)
    in_workers = ShardLoader(found, 8, **kwargs)  # the same crops, resized in uint8 there
    in_workers.set_epoch(1)
    for (a, labels), (b, same_labels) in zip(batches, in_workers, strict=True):
        assert a.dtype == torch.uint8 and a.shape == (8, 3, 16, 16)
        assert torch.equal(labels, same_labels) and (a.float() - b.float()).abs().mean() < 0.5
    with pytest.raises(ValueError, match="train crops"):
        ShardLoader(found, 8, size=16, mode="eval", resize_on_device=True)


@pytest.mark.parametrize("on_device", [False, True])
def test_chunk_buffers_are_reused_only_once_their_images_were_copied_out(shards, on_device):
    """Batches of 2 make chunks of 2: each of 2 workers sends 9 chunks through 5 slots
    (prefetch 1) while the loader holds chunks back for the plan's order."""
    found = find_shards(str(shards), "train")
    kwargs = dict(size=16, seed=5, buffer=3, resize_on_device=on_device)
    alone = ShardLoader(found, 2, **kwargs)
    loader = ShardLoader(found, 2, workers=2, prefetch=1, **kwargs)
    for epoch in (0, 1):
        alone.set_epoch(epoch)
        loader.set_epoch(epoch)
        for (a, labels), (b, same) in zip(alone, loader, strict=True):
            assert torch.equal(a, b) and torch.equal(labels, same)
        assert not loader.dataset.slots.busy.any()  # every chunk released at the epoch's end
    loader.close()
    from_slots, fresh = loader.dataset.slots.taken.sum(0).tolist()
    assert from_slots + fresh == 36 and from_slots > 20  # 18 chunks an epoch, most reused
    loader.dataset.slots = SlotPool(2, 0)  # no slot: every chunk in a fresh buffer
    for (a, labels), (b, same) in zip(alone, loader, strict=True):
        assert torch.equal(a, b) and torch.equal(labels, same)
    loader.close()
    assert loader.dataset.slots.taken.sum(0).tolist() == [0, 18]


@pytest.mark.parametrize("on_device", [False, True])
def test_an_image_that_does_not_decode_is_named_or_skipped(folder, tmp_path, on_device):
    root = tmp_path / "root"
    shutil.copytree(folder, root)
    truncated = root / "train" / "ant" / "0.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])
    (root / "train" / "bee" / "notes.jpg").write_text("not an image\n")
    write_shards(root, tmp_path / "wds", per_shard=5)
    found = find_shards(str(tmp_path / "wds"), "train")
    loader = ShardLoader(found, 8, size=16, workers=2, resize_on_device=on_device)
    with pytest.raises(DataError) as caught:
        list(loader)
    loader.close()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("cannot decode ")
    skipping = ShardLoader(found, 8, size=16, skip_bad=True, resize_on_device=on_device)
    got = list(skipping)
    ends = sorted(name.rsplit(":", 1)[1] for name in skipping.skipped)
    assert ends == ["00000000.jpg", "00000024.jpg"]  # ant/0.jpg and bee/notes.jpg, each once
    assert sum(len(labels) for _, labels in got) == 30  # 37 cut to 4 batches of 8, less 2
    assert all(images.shape[0] == len(labels) for images, labels in got)


@pytest.mark.parametrize("source", ["folder", "shards"])
def test_the_gpu_resize_check_script_runs_on_a_cpu(folder, shards, source, tmp_path, capsys):
    """benchmarks/gpu_resize_check.py's dry run, so it cannot rot while no GPU is lent."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_resize_check.py"
    spec = importlib.util.spec_from_file_location("gpu_resize_check", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = ["--root", str(folder), "--device", "cpu", "--workers", "1", "--size", "16",
            "--batch", "8"] + (["--shards", str(shards)] if source == "shards" else [])  # fmt: skip
    assert script.main(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "OK"
    assert out.startswith("ShardLoader" if source == "shards" else "StreamLoader")
    wrong = ["--root", str(tmp_path / "nope"), "--device", "cpu"]
    wrong += ["--shards", str(tmp_path / "nope")] if source == "shards" else []
    assert script.main(wrong) == 2
    assert "does not exist" in capsys.readouterr().err  # one line, before any work


def test_a_run_from_shards_trains_on_exactly_the_folder_images(folder, shards, tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "1", "--data-dir", str(shards), "--out", str(out)]
    assert main(["train", *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_set"]["images"] == 36
    assert summary["train_set"]["per_class"] == scan_folder(folder).per_class("train")
    assert summary["test_images"] == 12  # every val sample


def test_val_shards_named_apart_from_a_pipe_pattern(shards, tmp_path, capsys):
    """A pattern of commands has no info file beside it, and its 'train'->'val' names as many
    val shards as train shards: the error says to name them (a run that does: the next test;
    the shards they name: test_shards_hold_exactly_the_images_of_their_folder)."""
    train = ["--data-dir", f"pipe:cat {shards}/train-{{00000..00007}}.tar"]
    val = f"pipe:cat {shards}/val-{{00000..00002}}.tar"
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", *train, "--out", str(out)]) == 2
    assert _last_line(capsys).endswith("name them with the val_shards setting)")
    assert not out.exists()
    assert main(["train", "--preset", "smoke", "--set", f"val_shards={val}", "--out",
                 str(tmp_path / "cifar")]) == 2  # fmt: skip
    assert "val_shards is about shards: it needs --set dataset=shards" in _last_line(capsys)


def test_an_info_file_named_apart_spares_the_counting_pass(shards, tmp_path, monkeypatch):
    """A pattern of commands with the info file given (a pipe: command too): counts and class
    names from it, no shard read before training (ImageNet over S3: 140 GB)."""
    from deit.data import shards as module

    def no_scan(sources):
        raise AssertionError("the shards were read to count them")

    monkeypatch.setattr(module, "scan_shards", no_scan)
    info = f"pipe:cat {shards}/info.json"
    read = read_info_file(info)
    train = find_shards(f"pipe:cat {shards}/train-{{00000..00007}}.tar", "train", info=read)
    val = find_shards(f"pipe:cat '{shards}/val-{{00000..00002}}.tar'", "val", named=True,
                      info=read)  # fmt: skip
    assert train.classes == CLASSES and train.counts == (5,) * 7 + (1,)
    assert val.counts == (5, 5, 2)
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "1", "--data-dir", f"pipe:cat {shards}/train-{{00000..00007}}.tar",
            "--set", f"val_shards=pipe:cat {shards}/val-{{00000..00002}}.tar",
            "--set", f"shard_info={info}", "--out", str(out)]  # fmt: skip
    assert main(["train", *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_set"]["images"] == 36 and summary["test_images"] == 12
    with pytest.raises(ShardError, match="is not valid JSON"):
        read_info_file(f"{shards}/train-00000.tar")


def test_deit_data_takes_the_val_shards_and_info_file_named_apart(shards, capsys, monkeypatch):
    """deit data reads a pattern of commands as training does: --val-shards and --shard-info
    are training's val_shards and shard_info settings; without them, training's error."""
    from deit.data import shards as module

    train = ["data", "--dataset", "shards",
             "--data-dir", f"pipe:cat {shards}/train-{{00000..00007}}.tar"]  # fmt: skip
    assert main(train) == 2
    assert _last_line(capsys).endswith("name them with the val_shards setting)")

    def no_scan(sources):
        raise AssertionError("the shards were read to count them")

    monkeypatch.setattr(module, "scan_shards", no_scan)
    assert main([*train, "--val-shards", f"pipe:cat {shards}/val-{{00000..00002}}.tar",
                 "--shard-info", f"pipe:cat {shards}/info.json", "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert (report["train"], report["val"]) == (36, 12)
    assert (report["train_shards"], report["val_shards"]) == (8, 3)
    assert report["classes"] == list(CLASSES) and report["val_per_class"] == [4, 4, 4]
    assert main(["data", "--dataset", "folder", "--data-dir", str(shards),
                 "--val-shards", str(shards)]) == 2  # fmt: skip
    assert _last_line(capsys).endswith("they need --dataset shards, not folder")


def test_val_shards_must_have_the_train_shards_classes(shards, tmp_path):
    """Val shards named apart: counted ones (no info file: classes are label numbers) take the
    train shards' names; an info file naming other classes is refused in one line."""
    train, val = find_shard_splits(str(shards), f"pipe:cat {shards}/val-{{00000..00002}}.tar")
    assert val.classes == train.classes == CLASSES and val.counts == (5, 5, 2)
    other = _copy(shards, tmp_path)
    info = json.loads((other / "info.json").read_text())
    (other / "info.json").write_text(json.dumps(info | {"classes": ["x", "y", "z"]}))
    with pytest.raises(ShardError, match=r"the val shards' classes \(3: x, y, z\) are not the "
                       r"train shards' \(3: ant, bee, cat\)"):  # fmt: skip
        find_shard_splits(str(shards), str(other))


def _copy(shards, tmp_path):
    copy = tmp_path / "wds"
    shutil.copytree(shards, copy)
    return copy


def _last_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_a_truncated_or_missing_shard_stops_before_any_work(shards, tmp_path, capsys):
    copy, out = _copy(shards, tmp_path), tmp_path / "run"
    shard = copy / "train-00002.tar"
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[:1500])
    assert main(["train", *TINY, "--data-dir", str(copy), "--out", str(out)]) == 2
    assert _last_line(capsys) == (f"deit train: error: shard {shard} is 1500 bytes, the info "
                                  f"file says {size}: truncated or rewritten")  # fmt: skip
    shard.unlink()
    assert main(["train", *TINY, "--data-dir", str(copy), "--out", str(out)]) == 2
    assert _last_line(capsys) == (f"deit train: error: shard {shard} does not exist "
                                  f"(the info file lists it)")  # fmt: skip
    assert not out.exists()


@pytest.mark.parametrize(
    "setting, told",
    [([], "train_size=5000 needs the folder; add --set train_size=0"),  # the smoke preset's
     (["--set", "train_size=0", "--set", "test_size=0", "--set", "validation=true"],
      "validation=true needs the folder; add --set validation=false")],
)  # fmt: skip
def test_a_selection_shards_cannot_make_says_how_to_leave_it_out(tmp_path, capsys, setting, told):
    out = tmp_path / "run"
    line = ["train", "--preset", "smoke", "--set", "dataset=shards", "--data-dir", str(tmp_path)]
    assert main([*line, *setting, "--out", str(out)]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and f"dataset=shards streams every sample: {told}" in said
    assert not out.exists()


def test_a_sample_without_a_label_stops_before_any_work(tmp_path, capsys):
    pixels = np.zeros((16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    with tarfile.open(tmp_path / "train-00000.tar", "w") as tar:
        tar.add(tmp_path / "x.png", "a.png")
        (tmp_path / "a.cls").write_text("0")
        tar.add(tmp_path / "a.cls", "a.cls")
        tar.add(tmp_path / "x.png", "b.png")  # no b.cls
    with pytest.raises(ShardError, match=r"train-00000.tar: sample b has no label \(b.cls\)$"):
        find_shards(str(tmp_path), "train")
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data-dir", str(tmp_path), "--out", str(out)]) == 2
    assert _last_line(capsys).endswith("train-00000.tar: sample b has no label (b.cls)")
    assert not out.exists()


@pytest.mark.slow
def test_a_shard_truncated_behind_http_stops_the_run_keeping_its_checkpoint(
    shards, tmp_path, capsys
):
    """Over HTTP a truncation shows only when read: exit 1, the last checkpoint kept; the shard
    replaced, the run resumes and ends as the run that never stopped."""
    served = tmp_path / "served"
    copy = _copy(shards, served)
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/wds/"
    common = [*TINY, "--epochs", "2", "--set", "checkpoint_every=1", "--set", "shard_buffer=1"]
    try:
        good = (copy / "train-00004.tar").read_bytes()
        (copy / "train-00004.tar").write_bytes(good[:5000])  # 2 whole samples of 5, then cut
        cut = tmp_path / "cut"
        assert main(["train", *common, "--data-dir", url, "--out", str(cut)]) == 1
        line = _last_line(capsys)
        assert line.startswith(f"deit train: error: shard {url}train-00004.tar is truncated")
        assert line.endswith("Replace the shard and resume; the last checkpoint is kept")
        assert torch.load(cut / "checkpoint.pt", weights_only=True)["step"] >= 1
        (copy / "train-00004.tar").write_bytes(good)
        assert main(["train", "--resume", str(cut)]) == 0
        whole = tmp_path / "whole"
        assert main(["train", *common, "--data-dir", url, "--out", str(whole)]) == 0
    finally:
        httpd.shutdown()
    first, second = (
        torch.load(d / "checkpoint.pt", weights_only=True)["model"] for d in (cut, whole)
    )
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


RANK_SCRIPT = """
import json, sys, hashlib
import torch.distributed as dist
from deit.data.shard_loader import ShardLoader
from deit.data.shards import find_shards
dist.init_process_group("gloo")
rank, ranks = dist.get_rank(), dist.get_world_size()
found = find_shards(sys.argv[1], "train")
seen = {}
for mode, drop in (("plain", False), ("train", True)):
    loader = ShardLoader(found, 4, size=16, mode=mode, rank=rank, world_size=ranks, workers=1,
                         drop_last=drop, seed=2, buffer=3)
    loader.set_epoch(1)
    ids, batches = loader.indices().tolist(), list(loader)
    seen[mode] = [ids, sum(len(labels) for _, labels in batches), len(loader)]
    loader.close()
every = [None] * ranks
dist.all_gather_object(every, seen)
if rank == 0:
    json.dump(every, open(sys.argv[2], "w"))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_torchrun_ranks_read_each_sample_once_an_epoch(shards, tmp_path):
    script, result = tmp_path / "ranks.py", tmp_path / "seen.json"
    script.write_text(RANK_SCRIPT)
    line = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(script), str(shards), str(result)]  # fmt: skip
    done = subprocess.run(line, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    ranks = json.loads(result.read_text())
    every = [ids for rank in ranks for ids in rank["plain"][0]]
    assert sorted(every) == list(range(36))  # all of them, none twice
    assert [rank["plain"][1] for rank in ranks] == [len(rank["plain"][0]) for rank in ranks]
    trained = [rank["train"] for rank in ranks]
    assert trained[0][2] == trained[1][2]  # as many steps on each rank
    assert len(set(trained[0][0]) | set(trained[1][0])) == sum(len(t[0]) for t in trained)
    assert all(t[1] == len(t[0]) == t[2] * 4 for t in trained)


EXIT_SCRIPT = """
import sys
from deit.data.folder import scan_folder
from deit.data.shard_loader import ShardLoader
from deit.data.shards import find_shards
from deit.data.stream import StreamLoader

stream = StreamLoader(scan_folder(sys.argv[1]).train, 8, size=16, workers=2)
shards = ShardLoader(find_shards(sys.argv[2], "train"), 8, size=16, workers=2)
held = [iter(stream), iter(shards)]  # both mid-epoch, their workers running
print([len(next(batches)[0]) for batches in held])
"""


@pytest.mark.slow
def test_an_interpreter_exits_with_loaders_still_open(folder, shards):
    """Workers deaf to SIGTERM (the process group's signal is the trainer's) must not keep a
    script that never closed its loaders from exiting: Python's shutdown SIGTERMs, then waits."""
    line = [sys.executable, "-c", EXIT_SCRIPT, str(folder), str(shards)]
    done = subprocess.run(line, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout == "[8, 8]\n", done.stderr


@pytest.mark.slow
def test_a_shard_run_killed_mid_epoch_resumes_bit_identical(shards, tmp_path):
    """The documented rule: SIGKILL mid-epoch, ``--resume`` (here with another worker count)
    ends with the weights of the run that was never stopped."""
    common = [*TINY, "--epochs", "3", "--set", "workers=2", "--set", "checkpoint_every=1",
              "--set", "mixup=0.8", "--data-dir", str(shards)]  # fmt: skip
    whole = DeitProcess(["train", *common, "--out", str(tmp_path / "whole")])
    cut = tmp_path / "cut"
    process = DeitProcess(["train", *common, "--out", str(cut)])
    wait_for_step(cut, 5, process)  # inside the second epoch (4 steps an epoch)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert saved_step(cut) < 12
    assert main(["train", "--resume", str(cut), "--set", "workers=0"]) == 0
    assert whole.wait(timeout=300) == 0, whole.communicate()[1]
    first, second = (torch.load(d / "checkpoint.pt", weights_only=True)["model"]
                     for d in (cut, tmp_path / "whole"))  # fmt: skip
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


def test_deit_data_describes_and_checks_shards(folder, shards, tmp_path, capsys):
    assert main(["data", "--dataset", "shards", "--data-dir", str(shards), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["train"], report["val"]) == (36, 12)
    assert (report["train_shards"], report["val_shards"]) == (8, 3)
    assert report["classes"] == list(CLASSES) and report["train_per_class"] == [12, 12, 12]
    root = tmp_path / "root"
    shutil.copytree(folder, root)
    (root / "train" / "bee" / "notes.jpg").write_text("not an image\n")
    write_shards(root, tmp_path / "wds", per_shard=5)
    args = ["data", "--dataset", "shards", "--data-dir", str(tmp_path / "wds")]
    assert main([*args, "--check"]) == 2  # a file that does not decode: named
    lines = capsys.readouterr().out.splitlines()
    bad = [line for line in lines if line.startswith("bad: ")]
    assert len(bad) == 1 and lines[-1] == "checked 49 images: 1 bad"
    assert bad[0].startswith(f"bad: {tmp_path / 'wds'}/train-") and ".jpg: " in bad[0]
    cut = tmp_path / "wds" / "val-00001.tar"
    cut.write_bytes(cut.read_bytes()[:3000])
    assert main(args) == 2  # a shard cut short: one line before anything is read
    assert _last_line(capsys).startswith(f"deit data: error: shard {cut} is 3000 bytes")
    from deit.data.report import _check_shard  # a shard cut short after it was counted

    read, failures = _check_shard(str(cut))
    assert read < 5 and failures == [(str(cut), failures[0][1])]
    assert "is truncated" in failures[0][1]
