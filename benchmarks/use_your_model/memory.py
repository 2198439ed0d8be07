"""Memory of ``deit.predict`` as images stream: the process's resident set every 1 000 images.

``python benchmarks/use_your_model/memory.py CHECKPOINT PATH...`` prints one JSON line: the
resident set (MB) of this process, and of it plus its decoding workers, after each 1 000
images, and the img/s. Flat numbers mean memory does not grow with the number of images.
"""

import json
import os
import sys
import time

import deit


def rss_mb(pid: int) -> float:
    """Resident set of process ``pid`` in MB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def tree_mb() -> float:
    """Resident sets of this process and its children (the decoding workers), summed."""
    children = []
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
            children += [int(pid) for pid in f.read().split()]
    return rss_mb(os.getpid()) + sum(rss_mb(pid) for pid in children)


samples = []


def sink(record: dict) -> None:
    """Take a sample after every 1 000 records."""
    if (len(samples) + 1) * 1000 == sink.count + 1:
        samples.append((round(rss_mb(os.getpid())), round(tree_mb())))
    sink.count += 1


sink.count = 0
start = time.perf_counter()
result = deit.predict(sys.argv[1], sys.argv[2:], topk=1, sink=sink, progress=False)
row = {"images": result["images"], "img_per_s": round(result["images_per_second"])}
row |= {"rss_mb_main": [m for m, _ in samples], "rss_mb_with_workers": [t for _, t in samples]}
print(json.dumps(row))
