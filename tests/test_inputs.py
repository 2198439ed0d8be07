"""The folder's validation hold-out."""

import numpy as np
import torch

from deit.inputs import _hold_out


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
