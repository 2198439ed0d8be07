"""Training batches streamed from WebDataset shards, in an order fixed by the seed.

:class:`ShardLoader` has :class:`~deit.data.stream.StreamLoader`'s interface
(``len``, :meth:`~ShardLoader.set_epoch`, :meth:`~ShardLoader.indices`,
:meth:`~ShardLoader.iter_from`) over a :class:`~deit.data.shards.ShardSet`.
The order of an epoch is :func:`~deit.data.shard_order.epoch_plan`'s, a
function of the seed, the epoch, the number of ranks and the shards' sample
counts, never of the number of workers.

Workers split the streams (worker ``w`` of ``n`` reads streams ``w, w + n,
...``), so no sample is read twice in an epoch, and the training process puts
their samples back in the plan's order. Each image's random crop is seeded by
``(seed, epoch, its global position)`` as for an image folder. Hence a run
stopped mid-epoch resumes bit-identical, with any number of workers: each
stream skips the shards whose samples were all used and reads, without
decoding them, the used samples of the shards it resumes in.

On a GPU (``resize_on_device``) the workers only decode and crop, as for an
image folder (:mod:`deit.data.stream`): each chunk's crops cross in one
shared buffer, and the device resizes each batch. A worker packs its chunks
into buffers it reuses once the training process has copied their images
out (:class:`~deit.data.packing.SlotPool`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from deit.data.layout import DataError
from deit.data.packing import SlotPool, pack_planned, stack_items
from deit.data.resize import resize_crops
from deit.data.shard_order import epoch_plan, fewest, stream_shards
from deit.data.shards import ShardError, ShardSet, read_shard
from deit.data.stream import MODES, device_resizes
from deit.data.transforms import (
    RATIO,
    SCALE,
    CropPlan,
    Ratio,
    crop_rng,
    eval_image,
    plain_image,
    plan_crop,
    train_image,
)
from deit.data.workers import close_at_exit, shut_down, worker_loader


class _Stream:
    """One stream's reader: its shards front to back, keeping the samples still to be taken."""

    def __init__(self, shards: ShardSet, order: list[int], starts: np.ndarray, needed: set):
        self.shards, self.starts, self.needed = shards, starts, needed
        self.queue = [i for i in order if any(j in needed for j in range(starts[i], starts[i + 1]))]
        self.held: dict[int, tuple[str, bytes, int]] = {}
        self.reading, self.last = None, (-1, None)

    def take(self, sample: int) -> tuple[str, bytes, int]:
        """Sample ``sample``'s (name, bytes, label), reading on until it is found."""
        if sample == self.last[0]:  # a repeated copy
            return self.last[1]
        while sample not in self.held:
            self._advance()
        self.last = (sample, self.held.pop(sample))
        return self.last[1]

    def _advance(self) -> None:
        if self.reading is None:
            self.shard = self.queue.pop(0)  # never empty: every taken sample is in a queued shard
            self.reading, self.read = read_shard(self.shards.sources[self.shard]), 0
        source, count = self.shards.sources[self.shard], self.shards.counts[self.shard]
        item = next(self.reading, None)
        if item is None:
            self.reading = None
            if self.read < count:
                raise ShardError(f"shard {source} ended after {self.read} of its {count} samples: "
                                 f"truncated")  # fmt: skip
            return
        if self.read >= count:
            raise ShardError(f"shard {source} holds more than the {count} samples counted")
        sample = int(self.starts[self.shard]) + self.read
        self.read += 1
        if sample in self.needed:
            self.held[sample] = item

    def close(self) -> None:
        """Stop reading (a ``pipe:`` command is ended)."""
        if self.reading is not None:
            self.reading.close()


class ShardStream(IterableDataset):
    """The decoding side: the epoch's plan, and each worker's samples decoded, in chunks.

    ``order`` holds :func:`epoch_plan`'s keyword arguments but the epoch;
    ``view`` those of :func:`sample_view`; ``limit`` whole batches of how
    many samples the epoch is cut to (0: not cut). Epoch and first position
    come through :attr:`state`, a tensor in shared memory, because
    persistent workers hold their own copy of this object. A chunk is
    ``(positions, images, labels, failures, fatal, (worker, slot))``:
    ``failures`` lists ``(position, name, message)`` of images that did not
    decode; ``fatal`` is the one line of a shard error, which ends the
    worker's part; the images are in ``slots``' buffer ``slot`` of
    ``worker`` (-1: a fresh one). With ``crop_only`` the images are training
    crops not yet resized, packed into one buffer per chunk,
    ``(flat, shapes)``.
    """

    def __init__(
        self, shards: ShardSet, order: dict, view: dict, limit: int, chunk: int,
        slots: SlotPool, crop_only: bool = False,
    ) -> None:  # fmt: skip
        self.shards, self.order, self.view = shards, order, view
        self.limit, self.chunk, self.crop_only, self.slots = limit, chunk, crop_only, slots
        self.state = torch.zeros(2, dtype=torch.int64).share_memory_()
        self._plans: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """:func:`epoch_plan` for ``epoch``, cut to whole batches of ``limit``."""
        if epoch not in self._plans:
            ids, which = epoch_plan(self.shards.counts, epoch=epoch, **self.order)
            if self.limit:
                cut = fewest(self.shards.counts, self.order["world_size"])
                cut -= cut % self.limit
                ids, which = ids[:cut], which[:cut]
            self._plans = {epoch: (ids, which)}  # one epoch at a time
        return self._plans[epoch]

    def __iter__(self) -> Iterator[tuple]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        epoch, first = self.state.tolist()
        ids, which = self.plan(epoch)
        mine = np.flatnonzero(which % workers == worker)
        mine = mine[mine >= first]
        starts = np.concatenate([[0], np.cumsum(self.shards.counts)]).astype(np.int64)
        streams = stream_shards(len(self.shards.counts), epoch=epoch,
                                **{k: self.order[k] for k in _SHARD_KEYS})  # fmt: skip
        readers = {}
        for s in np.unique(which[mine]).tolist():
            needed = set(ids[mine[which[mine] == s]].tolist())
            readers[s] = _Stream(self.shards, streams[s], starts, needed)
        items = []
        try:
            for position in mine.tolist():
                sample = readers[int(which[position])].take(int(ids[position]))
                items.append(self._item(position, sample, epoch))
                if len(items) == self.chunk:
                    yield self._send(items, worker)
                    items = []
        except ShardError as err:
            yield self._send(items, worker, fatal=str(err))
            return
        finally:
            for reader in readers.values():
                reader.close()
        if items:
            yield self._send(items, worker)

    def _send(self, items: list, worker: int, fatal: str | None = None) -> tuple:
        """:func:`_chunk` of ``items``, packed into a buffer of :attr:`slots`, and its slot."""
        slot = -1

        def alloc(numel: int) -> torch.Tensor:
            nonlocal slot
            buffer, slot = self.slots.take(worker, numel)
            return buffer

        chunk = _chunk(items, alloc, fatal)
        return (*chunk, (worker, slot))

    def _item(self, position: int, sample: tuple[str, bytes, int], epoch: int) -> tuple:
        name, data, label = sample
        if not 0 <= label < len(self.shards.classes):
            raise ShardError(f"{name}: label {label} is not one of the "
                             f"{len(self.shards.classes)} classes")  # fmt: skip
        draw = self.order["rank"] + position * self.order["world_size"]
        seed, view = self.order["seed"], self.view
        try:
            if self.crop_only:  # the device resizes: decoded with its chunk (_chunk)
                rng = crop_rng(seed, epoch, draw)
                image = plan_crop(name, view["size"], rng, view["scale"], view["ratio"], data=data)
            else:
                image = sample_view(name, data, seed=seed, epoch=epoch, draw=draw, **view)
        except DataError as err:
            return position, None, label, (name, str(err))
        return position, image, label, None


_SHARD_KEYS = ("seed", "rank", "world_size", "shuffle")


def sample_view(
    name: str, data: bytes, *, mode: str, size: int, seed: int, epoch: int, draw: int,
    scale: Ratio = SCALE, ratio: Ratio = RATIO, crop_pct: float = 0.875,
) -> torch.Tensor:  # fmt: skip
    """One image's view, exactly as an image folder's (:class:`deit.data.stream.ImageStream`),
    from its bytes: the random crop seeded by ``(seed, epoch, draw)``, ``draw`` its global
    position; ``name`` names it in the one-line ``DataError`` of an image that cannot decode."""
    if mode == "train":
        return train_image(name, size, crop_rng(seed, epoch, draw), scale, ratio, data=data)
    if mode == "eval":
        return eval_image(name, size, crop_pct, data=data)
    return plain_image(name, size, data=data)


def _chunk(items: list, alloc: Callable[[int], torch.Tensor], fatal: str | None = None) -> tuple:
    """Items ``(position, image or plan, label, failure)`` → the chunk a worker sends.

    Images are stacked into ``alloc``'s buffer (:func:`~deit.data.packing.stack_items`);
    crop plans decoded into one (:func:`~deit.data.packing.pack_planned`),
    sent as ``(flat, shapes)``.
    """
    good = [(p, image, label) for p, image, label, failure in items if failure is None]
    failures = [(p, *failure) for p, _, _, failure in items if failure is not None]
    images = None
    if good and isinstance(good[0][1], CropPlan):
        flat, shapes, good, failed = pack_planned(good, alloc)
        failures += failed
        images = (flat, shapes)
    elif good:  # stacked in shared memory already: no copy to cross to the loader
        images = stack_items([(image, label, None) for _, image, label in good], alloc).images
    return [p for p, _, _ in good], images, [label for _, _, label in good], failures, fatal


class ShardLoader:
    """Yield ``(images, labels)`` from shards: uint8 B×3×S×S and int64, on ``device``.

    The interface of :class:`~deit.data.stream.StreamLoader`, with its
    ``mode`` (train, eval, plain views), ``workers``, ``prefetch`` and
    ``skip_bad`` (an image that does not decode is named, or skipped and
    listed in :attr:`skipped`). A shard that is missing or truncated, or a
    sample without its label, raises one-line ``DataError`` naming it, with
    or without ``skip_bad``. The order is :func:`epoch_plan`'s, with
    ``buffer`` samples per stream's shuffle buffer. ``resize_on_device``
    (default: train crops on a CUDA device), as for an image folder: the
    workers only decode and crop, each chunk's crops cross in one buffer and
    go to the device on arrival, and each batch is resized there
    (:func:`~deit.data.resize.resize_crops`).
    """

    def __init__(
        self, shards: ShardSet, batch_size: int, *, size: int, mode: str = "train",
        seed: int = 0, repeats: int = 1, rank: int = 0, world_size: int = 1, workers: int = 0,
        device: str | torch.device = "cpu", skip_bad: bool = False, scale: Ratio = SCALE,
        ratio: Ratio = RATIO, crop_pct: float = 0.875, prefetch: int = 2,
        shuffle: bool | None = None, drop_last: bool | None = None, buffer: int = 1000,
        resize_on_device: bool | None = None,
    ) -> None:  # fmt: skip
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        device = torch.device(device)
        resize_on_device = device_resizes(resize_on_device, mode, device)
        if len(shards.counts) < world_size:
            raise ValueError(f"{len(shards.counts)} shard(s) cannot give each of {world_size} "
                             f"ranks its own; write smaller shards")  # fmt: skip
        self.shards, self.batch_size, self.mode, self.size = shards, batch_size, mode, size
        self.seed, self.repeats, self.rank, self.world_size = seed, repeats, rank, world_size
        self.shuffle = mode != "eval" if shuffle is None else shuffle
        self.drop_last = mode != "eval" if drop_last is None else drop_last
        self.device, self.skip_bad, self.resize_on_device = device, skip_bad, resize_on_device
        self.workers, self.prefetch = workers, prefetch
        self.skipped: list[str] = []
        self.epoch = 0
        order = {"seed": seed, "rank": rank, "world_size": world_size, "shuffle": self.shuffle,
                 "buffer": buffer, "repeats": repeats}  # fmt: skip
        view = {"mode": mode, "size": size, "scale": scale, "ratio": ratio, "crop_pct": crop_pct}
        limit = batch_size if self.drop_last else 0
        # Slots for the chunks in flight (prefetch) and those held until their turn comes.
        slots = SlotPool(workers, prefetch + 4)
        self.dataset = ShardStream(shards, order, view, limit, chunk=min(batch_size, 64),
                                   slots=slots, crop_only=resize_on_device)  # fmt: skip
        if len(self) == 0:
            raise ValueError(f"{len(shards)} images in {len(shards.counts)} shard(s) make no "
                             f"batch of {batch_size} on each of {world_size} rank(s) with "
                             f"drop_last={self.drop_last}")  # fmt: skip
        self._loader: DataLoader | None = None

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's (sample ids, streams) of ``epoch``, in order (:meth:`ShardStream.plan`)."""
        return self.dataset.plan(epoch)

    def __len__(self) -> int:
        """Batches per epoch on this rank (training: the same on every rank, every epoch)."""
        if self.drop_last:
            return fewest(self.shards.counts, self.world_size) // self.batch_size
        return -(-len(self.plan(self.epoch)[0]) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order (and crops) the next iteration draws."""
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        """This rank's global sample ids for the current epoch, in batch order."""
        return torch.from_numpy(self.plan(self.epoch)[0].copy())

    def close(self) -> None:
        """Stop the worker processes now; the next iteration starts new ones."""
        shut_down(self._loader)
        self._loader = None

    def _data_loader(self) -> DataLoader:
        if self._loader is None:
            self._loader = worker_loader(self.dataset, workers=self.workers,
                                         prefetch=self.prefetch, device=self.device,
                                         batch_size=None)  # fmt: skip
            close_at_exit(self)
        return self._loader

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the epoch's batches."""
        return self.iter_from(0)

    def iter_from(self, first_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the epoch's batches from number ``first_batch`` on (to resume mid-epoch)."""
        end, size = len(self.plan(self.epoch)[0]), self.batch_size
        position = first_batch * size
        self.dataset.state[0], self.dataset.state[1] = self.epoch, position
        slots = self.dataset.slots
        slots.reset()  # the last iteration's chunks are never read
        held: dict[int, tuple] = {}
        unread: dict[tuple[int, int], int] = {}  # (worker, slot) → its images not yet copied out
        batch: list[tuple] = []
        failure = None
        for positions, images, labels, failures, fatal, slot in self._data_loader():
            slot = tuple(slot)  # the DataLoader may hand the pair on as a list
            if positions:  # a worker's fresh buffers (slot -1) share one count, freeing nothing
                unread[slot] = unread.get(slot, 0) + len(positions)
            else:
                slots.release(*slot)
            if self.resize_on_device and positions:  # a chunk's crops, packed: to the device
                flat, shapes = images
                flat = flat.to(self.device, non_blocking=self.device.type == "cuda")
                pieces = flat.split(shapes.prod(1).mul(3).tolist())
                images = list(zip(pieces, shapes.tolist(), strict=True))
            for i, p in enumerate(positions):
                held[p] = (images[i], labels[i], slot)
            for p, name, message in failures:
                held[p] = (None, name, message)
            while position in held:
                item = held.pop(position)
                position += 1
                if item[0] is not None:
                    batch.append(item)
                elif not self.skip_bad:
                    failure = item[2]
                elif item[1] not in self.skipped:
                    self.skipped.append(item[1])
                if failure is None and batch and (position % size == 0 or position == end):
                    ready = self._to_device(batch)  # copied out of the chunks' buffers
                    for *_, key in batch:
                        unread[key] -= 1
                        if not unread[key]:
                            del unread[key]
                            slots.release(*key)
                    batch = []
                    yield ready
            if failure is not None or fatal is not None:
                self.close()  # now, not in whatever the garbage collector interrupts later
                raise DataError(failure) if failure is not None else ShardError(fatal)
        if position < end:  # a worker ended without its samples: never expected
            raise DataError(f"the shards ended at sample {position} of {end} of this epoch")

    def _to_device(self, batch: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
        nb = self.device.type == "cuda"
        labels = torch.tensor([label for _, label, _ in batch], dtype=torch.int64)
        if self.resize_on_device:  # crops already on the device, from the chunks they came in
            flat = torch.cat([pixels for (pixels, _), _, _ in batch])
            shapes = torch.tensor([shape for (_, shape), _, _ in batch], dtype=torch.int64)
            images = resize_crops(flat, shapes, self.size)
        else:
            images = torch.stack([image for image, _, _ in batch])
        return images.to(self.device, non_blocking=nb), labels.to(self.device, non_blocking=nb)
