"""An epoch's record: its running sums across ranks and interruptions, and its metrics line.

What this room holds: :func:`zero_stats` (the sums of an epoch not yet
begun), :func:`add_stats` (one stretch of training added, summed over
ranks: a run paused mid-epoch adds the rest after its resume),
:func:`epoch_record` (the line of metrics.jsonl they make) and
:func:`print_epoch` (the line shown under the progress bar).
"""

from __future__ import annotations

from tqdm import tqdm

from deit.distributed import World


def zero_stats() -> dict[str, float]:
    """Running sums of an epoch in progress."""
    return {"loss_sum": 0.0, "images": 0, "steps": 0, "seconds": 0.0, "data_seconds": 0.0}


def epoch_record(
    epoch: int, lr: float, sums: dict, top1: dict | None, evaluated: int | None = None
) -> dict:
    """One line of metrics.jsonl; ``top1`` None (and so the agreement): not evaluated.
    ``evaluated``: the number of images ``top1`` was measured on."""
    agreement = top1.pop("agreement", None) if top1 else None
    return {"epoch": epoch + 1, "lr": lr, "train_loss": sums["loss_sum"] / sums["images"],
            "test_top1": top1, "test_images": evaluated, "teacher_agreement": agreement,
            "seconds": sums["seconds"],
            "img_per_s": sums["images"] / sums["seconds"],
            "data_wait": sums["data_seconds"] / sums["seconds"]}  # fmt: skip


def print_epoch(record: dict, epochs: int) -> None:
    """The one line per epoch shown under the progress bar (no accuracies if not evaluated)."""
    heads = [f"{k} {v:.2f}%" for k, v in (record["test_top1"] or {}).items()]
    tqdm.write("  ".join([f"epoch {record['epoch']}/{epochs}", f"loss {record['train_loss']:.4f}",
                          *heads, f"{record['img_per_s']:.0f} img/s",
                          f"waiting for data {100 * record['data_wait']:.0f} %"]))  # fmt: skip


def add_stats(partial: dict, stats: dict, world: World) -> dict:
    """Add one rank's epoch sums to the running ones, summed over ranks (seconds: the slowest
    rank's; data_seconds: the rank that waited longest for its batches)."""
    loss_sum, images = world.sum([stats["loss_sum"], stats["images"]])
    ranks = world.gather((stats["seconds"], stats["data_seconds"]))
    seconds, data_seconds = (max(column) for column in zip(*ranks, strict=True))
    return {
        "loss_sum": partial["loss_sum"] + loss_sum,
        "images": partial["images"] + int(images),
        "steps": partial["steps"] + stats["steps"],
        "seconds": partial["seconds"] + seconds,
        "data_seconds": partial.get("data_seconds", 0.0) + data_seconds,  # none in old checkpoints
    }
