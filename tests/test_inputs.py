"""The folder's validation hold-out and the ranks' check that they listed the same files."""

import dataclasses

import numpy as np
import pytest
import torch

from deit.data import DataError
from deit.distributed import World
from deit.inputs import _hold_out, same_listing


def test_the_hold_out_takes_a_seeded_tenth_of_every_class_in_one_pass():
    labels = np.random.default_rng(0).integers(0, 7, 503).tolist()
    samples = tuple((f"img{i}.jpg", c) for i, c in enumerate(labels))
    keep, held = _hold_out(samples, 7)
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(0)).tolist()
    expected = set()  # the rule, one class at a time: its first tenth in the seeded order
    for c in range(7):
        members = [i for i in order if labels[i] == c]
        expected.update(members[: len(members) // 10])
    assert held == tuple(samples[i] for i in sorted(expected))
    assert keep == tuple(s for i, s in enumerate(samples) if i not in expected)


@dataclasses.dataclass(frozen=True)
class TwoRanks(World):
    """A world of two ranks whose other rank's digest is given."""

    other: str | None = None

    def gather(self, obj):
        return [obj, obj if self.other is None else self.other]


def test_ranks_that_listed_other_files_stop_in_one_line():
    parts = (("a", "b"), (("a/1.jpg", 0), ("b/2.jpg", 1)))
    same_listing(TwoRanks(world_size=2), "DIR", *parts)  # the same files: nothing to say
    same_listing(TwoRanks(world_size=1, other="x"), "DIR", *parts)  # one process: not asked
    with pytest.raises(DataError) as caught:
        same_listing(TwoRanks(world_size=2, other="x"), "DIR", *parts)
    assert str(caught.value).startswith("DIR: rank 1 listed other files than rank 0")
