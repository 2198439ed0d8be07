"""What reading a sample out of a shard costs, against reading the same image as a file.

Three ways over the same shards (``python -m deit.data.export shards``), in one
process, alternating for ``--rounds`` rounds (median per sample of each):

- ``tarfile, stream mode`` (``"r|"``): the standard library's tar reader in stream mode, the way
  `deit.data.shards.read_shard` read shards before `deit.data.tar_stream`;
- ``read_shard``: the shard reader as it is now (names, labels, the checks);
- ``files``: each image of the folder the shards were written from, opened
  and read whole (what the image-folder loader does per image).

Nothing is decoded: decoding a photo-sized JPEG takes ~1.2 ms here, so these
are the costs around it. Usage (a quiet machine):

    python benchmarks/shard_read.py --shards ROOT-shards --folder ROOT [--rounds 9]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import tarfile
import time

from deit.data.folder import scan_folder
from deit.data.shards import find_shards, read_shard
from deit.hardware import hardware


def tarfile_stream(sources) -> int:
    count = 0
    for source in sources:
        with open(source, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".jpg"):
                    tar.extractfile(member).read()
                    count += 1
                elif member.isfile():
                    tar.extractfile(member).read()
    return count


def shard_reader(sources) -> int:
    return sum(1 for source in sources for _ in read_shard(source))


def files(paths) -> int:
    for path in paths:
        with open(path, "rb") as f:
            f.read()
    return len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", required=True, help="the shards' folder (train split read)")
    parser.add_argument("--folder", required=True, help="the image folder they were written from")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    sources = find_shards(args.shards, "train").sources
    paths = [path for path, _ in scan_folder(args.folder).train]
    ways = {"tarfile, stream mode": lambda: tarfile_stream(sources),
            "read_shard": lambda: shard_reader(sources), "files": lambda: files(paths)}  # fmt: skip
    for way in ways.values():  # warm-up: the page cache
        way()
    times = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, way in ways.items():
            start = time.perf_counter()
            count = way()
            times[name].append(1000 * (time.perf_counter() - start) / count)
    hw = hardware()
    family = f" ({hw['cpu_family']})" if "cpu_family" in hw else ""
    now = datetime.datetime.now(datetime.UTC)
    print(f"{now:%Y-%m-%d %H:%M} UTC · {hw['cpu']}{family} · {len(paths)} images, "
          f"{len(sources)} shards · median of {args.rounds} rounds\n")  # fmt: skip
    print("| way | ms per image [range] |")
    print("|---|---:|")
    for name, per in times.items():
        print(f"| {name} | {statistics.median(per):.4f} [{min(per):.4f}-{max(per):.4f}] |")


if __name__ == "__main__":
    main()
