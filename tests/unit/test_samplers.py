"""SpeakerPairSampler: speaker pairs per batch, determinism, DDP split,
checkpointing."""

import collections

import pytest
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_ssv.data.samplers import SpeakerPairSampler
from speechbrain_ssv.utils.errors import SSVInputError


def _labels(seed=0, n_spk=12):
    """Speakers with 1 to 9 utterances, shuffled across the dataset."""
    g = torch.Generator().manual_seed(seed)
    labels = []
    for s in range(n_spk):
        labels += [f"spk{s:02d}"] * (1 + s % 9)
    perm = torch.randperm(len(labels), generator=g).tolist()
    return [labels[i] for i in perm]


def _check_batch(batch, labels, k):
    assert len(batch) == 2 * k
    spks = [labels[i] for i in batch]
    counts = collections.Counter(spks)
    assert len(counts) == k and set(counts.values()) == {2}
    for a, b in zip(batch[0::2], batch[1::2]):
        assert labels[a] == labels[b]  # laid out in speaker pairs
        n_utts = labels.count(labels[a])
        if n_utts >= 2:
            assert a != b  # two different utterances when there are two


def test_every_speaker_exactly_twice_per_batch():
    labels = _labels()
    sampler = SpeakerPairSampler(labels, batch_speakers=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        _check_batch(batch, labels, 4)


def test_every_utterance_offered_when_balanced():
    labels = [f"s{i % 6}" for i in range(6 * 8)]  # 6 speakers x 8 utterances
    sampler = SpeakerPairSampler(labels, batch_speakers=3, seed=0)
    seen = [i for b in sampler for i in b]
    assert sorted(seen) == list(range(len(labels)))


def test_odd_speaker_pairs_use_different_utterances():
    labels = ["a"] * 3 + ["b"] * 3
    for epoch in range(5):
        sampler = SpeakerPairSampler(labels, 2, seed=1, epoch=epoch)
        for batch in sampler:
            _check_batch(batch, labels, 2)


def test_single_utterance_speakers():
    labels = ["a", "b", "b", "c", "c"]
    batch = next(iter(SpeakerPairSampler(labels, 3, seed=0)))
    assert batch.count(0) == 2  # 'a' paired with itself
    strict = SpeakerPairSampler(labels, 2, seed=0, allow_single=False)
    assert all(0 not in b for b in strict)
    with pytest.raises(SSVInputError, match="batch_speakers"):
        SpeakerPairSampler(labels, 3, allow_single=False)


def test_deterministic_per_seed_and_epoch():
    labels = _labels()
    a = SpeakerPairSampler(labels, 4, seed=7)
    b = SpeakerPairSampler(labels, 4, seed=7)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    c = SpeakerPairSampler(labels, 4, seed=8, epoch=1)
    assert list(c) != list(a)
    # Independent of dataset order given the same labels per index.
    assert list(SpeakerPairSampler(labels, 4, seed=7, epoch=1)) == list(a)


def test_drop_last_false_keeps_a_smaller_batch():
    labels = ["a"] * 6 + ["b"] * 2 + ["c"] * 2
    full = SpeakerPairSampler(labels, 3, seed=0, drop_last=True)
    partial = SpeakerPairSampler(labels, 3, seed=0, drop_last=False)
    assert all(len(b) == 6 for b in full)
    assert len(list(partial)) == len(list(full)) + 1
    last = list(partial)[-1]
    assert len(last) < 6 and len({labels[i] for i in last}) == len(last) // 2


def test_ddp_rank_split_is_disjoint_and_even():
    labels = [f"s{i % 10}" for i in range(10 * 7)]
    world = 3
    glob = list(SpeakerPairSampler(labels, 2, seed=5, epoch=2))
    per_rank = [
        list(
            SpeakerPairSampler(
                labels, 2, seed=5, epoch=2, num_replicas=world, rank=r
            )
        )
        for r in range(world)
    ]
    assert len({len(p) for p in per_rank}) == 1  # same number of steps
    n = len(per_rank[0])
    assert n == len(glob) // world
    seen = [tuple(b) for p in per_rank for b in p]
    assert len(set(seen)) == len(seen)  # no batch on two ranks
    assert sorted(seen) == sorted(tuple(b) for b in glob[: n * world])
    for r, batches in enumerate(per_rank):
        assert batches == glob[r::world][:n]
    with pytest.raises(SSVInputError, match="rank"):
        SpeakerPairSampler(labels, 2, num_replicas=2, rank=2)


def test_checkpoint_round_trip(tmp_path):
    labels = _labels()
    sampler = SpeakerPairSampler(labels, 4, seed=11)
    sampler.set_epoch(3)
    ckpt = Checkpointer(tmp_path, recoverables={"sampler": sampler})
    ckpt.save_checkpoint()
    fresh = SpeakerPairSampler(labels, 4, seed=0)
    Checkpointer(
        tmp_path, recoverables={"sampler": fresh}
    ).recover_if_possible()
    assert (fresh.seed, fresh.epoch) == (11, 3)
    assert list(fresh) == list(sampler)
    other = SpeakerPairSampler(labels[:-1], 4)
    with pytest.raises(SSVInputError, match="another training set"):
        other.load_state_dict(sampler.state_dict())


def test_from_dataset_and_dataloader():
    data = {f"u{i}": {"spk_id": f"s{i % 4}", "x": float(i)} for i in range(16)}
    ds = DynamicItemDataset(data, output_keys=["id", "x"])
    sampler = SpeakerPairSampler.from_dataset(ds, batch_speakers=4, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler)
    labels = [data[i]["spk_id"] for i in ds.data_ids]
    for batch in loader:
        idx = [int(x) for x in batch["x"]]
        _check_batch(idx, labels, 4)
    with pytest.raises(SSVInputError, match="gender"):
        SpeakerPairSampler.from_dataset(ds, 2, key="gender")
