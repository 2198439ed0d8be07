"""Tests for the on-device batch loader: batching, determinism, sharding."""

import pytest
import torch

from deit.data.loader import BatchLoader


def make_data(n=100):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()
    return images, torch.arange(n)


def epoch_labels(loader):
    return torch.cat([labels for _, labels in loader])


def test_batches_drop_last_and_pair_images_with_labels():
    images, labels = make_data(100)
    loader = BatchLoader(images, labels, batch_size=32, seed=0)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    for x, y in batches:
        assert x.shape == (32, 3, 2, 2)
        assert torch.equal(x[:, 0, 0, 0].long(), y)


def test_keep_last_partial_batch():
    images, labels = make_data(100)
    loader = BatchLoader(images, labels, batch_size=32, shuffle=False, drop_last=False)
    sizes = [len(y) for _, y in loader]
    assert sizes == [32, 32, 32, 4]
    assert torch.equal(epoch_labels(loader), torch.arange(100))


def test_same_seed_same_order_and_epochs_differ():
    images, labels = make_data(100)
    a = BatchLoader(images, labels, batch_size=10, seed=3)
    b = BatchLoader(images, labels, batch_size=10, seed=3)
    assert torch.equal(epoch_labels(a), epoch_labels(b))
    first = epoch_labels(a)
    a.set_epoch(1)
    assert not torch.equal(first, epoch_labels(a))
    assert sorted(epoch_labels(a).tolist()) == list(range(100))
    c = BatchLoader(images, labels, batch_size=10, seed=4)
    assert not torch.equal(first, epoch_labels(c))


def test_shards_are_disjoint_equal_and_cover_the_epoch():
    images, labels = make_data(100)
    shards = [BatchLoader(images, labels, 8, seed=1, rank=r, world_size=3) for r in range(3)]
    seen = [epoch_labels(s) for s in shards]
    assert {len(s) for s in shards} == {4}
    assert all(len(x) == 32 for x in seen)
    union = torch.cat(seen)
    assert len(set(union.tolist())) == 96
    # The shards partition one global permutation: a single rank with the
    # global batch sees the same 96 examples.
    whole = BatchLoader(images, labels, 24, seed=1)
    assert set(epoch_labels(whole).tolist()) == set(union.tolist())


def test_repeated_augmentation_repeats_each_image_in_a_row_and_keeps_the_epoch_length():
    images, labels = make_data(99)
    loader = BatchLoader(images, labels, 9, seed=2, repeats=3)
    plain = BatchLoader(images, labels, 9, seed=2)
    seen = epoch_labels(loader)
    assert len(loader) == len(plain) == 11
    assert len(seen) == 99
    assert torch.equal(seen.view(33, 3), seen.view(33, 3)[:, :1].expand(33, 3))
    assert len(set(seen.tolist())) == 33


def test_repeated_copies_go_to_different_ranks_of_one_global_batch():
    images, labels = make_data(96)
    shards = [BatchLoader(images, labels, 4, repeats=3, rank=r, world_size=3) for r in range(3)]
    first = [next(iter(s))[1] for s in shards]
    assert torch.equal(first[0], first[1]) and torch.equal(first[1], first[2])


def test_bad_arguments_raise():
    images, labels = make_data(10)
    with pytest.raises(ValueError, match="labels"):
        BatchLoader(images, labels[:5], 2)
    with pytest.raises(ValueError, match="no batch"):
        BatchLoader(images, labels, 32)
    with pytest.raises(ValueError, match="rank"):
        BatchLoader(images, labels, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="repeats"):
        BatchLoader(images, labels, 2, repeats=0)
