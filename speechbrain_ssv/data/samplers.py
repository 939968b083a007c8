"""Batch samplers.

:class:`SpeakerPairSampler` builds the batches the angular prototypical term
of the FFSVC disentanglement recipe needs (Mun, Han et al., Eq. 9): ``K``
distinct speakers per batch, each with exactly two utterances, so that every
speaker's second utterance is its positive and the other ``K - 1`` speakers'
are negatives.

Authors
 * speechbrain-ssv developers 2026
"""

import hashlib
import json
import logging
import os

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

from speechbrain_ssv.utils.errors import SSVInputError
from speechbrain_ssv.utils.io import write_json

logger = logging.getLogger(__name__)

__all__ = ["SpeakerPairSampler"]


def _fingerprint(labels):
    digest = hashlib.sha1()
    for lab in labels:
        digest.update(str(lab).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


@register_checkpoint_hooks
class SpeakerPairSampler(torch.utils.data.Sampler):
    """Batches of ``batch_speakers`` distinct speakers, two utterances each.

    Every batch is a list of dataset indices laid out in pairs,
    ``[a_1, b_1, a_2, b_2, ..., a_K, b_K]``: ``a_k`` and ``b_k`` are two
    different utterances of speaker ``k`` (the same one twice only for a
    speaker that has a single utterance, when ``allow_single=True``), and
    the ``K`` speakers are distinct. Reshape the batch's embeddings to
    ``[K, 2, D]`` to get the two views of Eq. 9.

    One epoch: each speaker's utterances are shuffled and cut into pairs (an
    odd one out is paired with another of that speaker's utterances), so
    every utterance is offered once per epoch. The epoch has the largest
    number of batches ``B`` the pair counts ``c_s`` allow
    (``sum_s min(c_s, B) >= K B``); each batch draws ``K`` distinct speakers
    at random, in proportion to the pairs they have left, except that
    speakers which every remaining batch needs are always drawn, so ``B`` is
    reached. The pairs that do not fit (a speaker with far more pairs than
    the others) are dropped for the epoch; with ``drop_last=False`` one last,
    smaller batch takes one pair of each speaker left. With balanced
    speakers every utterance is used. ``max_pairs_per_speaker`` caps
    dominant speakers. Cost: ``O(B x speakers)``, vectorised.

    The batches depend only on ``(seed, epoch)``, so a resumed run replays
    the same epoch (SpeechBrain's ``SaveableDataLoader`` fast-forwards by
    count) and every DDP rank computes the same global list.

    DDP: with ``num_replicas > 1`` rank ``r`` takes global batches
    ``r, r + R, r + 2R, ...``, truncated so that every rank has the same
    number of steps (no rank waits in a collective for a missing batch).
    Inside a SpeechBrain ``Brain``, which wraps any ``batch_sampler`` in its
    own ``DistributedSamplerWrapper`` under DDP, keep ``num_replicas=1`` and
    let the wrapper do the slicing; set ``num_replicas``/``rank`` when you
    build the ``DataLoader`` yourself (then also set
    ``brain.train_sampler = sampler`` so ``set_epoch`` is called).

    Arguments
    ---------
    labels : sequence
        Speaker label of every dataset index (strings or ints).
    batch_speakers : int
        Speakers per batch ``K`` (the batch holds ``2 K`` utterances).
    seed : int
        Base seed.
    drop_last : bool
        Drop the last batch when it has fewer than ``K`` speakers.
    allow_single : bool
        Keep speakers with one utterance (paired with itself; the two crops
        still differ). ``False`` leaves them out.
    max_pairs_per_speaker : int | None
        Cap on a speaker's pairs per epoch (a random subset when capped).
    num_replicas : int
        DDP world size for slicing inside the sampler (see above).
    rank : int
        This process's rank.
    epoch : int
        Starting epoch.

    Example
    -------
    >>> labels = ["a", "a", "b", "b", "b", "c", "c", "d", "d"]
    >>> sampler = SpeakerPairSampler(labels, batch_speakers=2, seed=0)
    >>> batch = next(iter(sampler))
    >>> len(batch), len({labels[i] for i in batch})
    (4, 2)
    >>> [labels[batch[0]] == labels[batch[1]], labels[batch[2]] == labels[batch[3]]]
    [True, True]
    """

    def __init__(
        self,
        labels,
        batch_speakers,
        seed=0,
        drop_last=True,
        allow_single=True,
        max_pairs_per_speaker=None,
        num_replicas=1,
        rank=0,
        epoch=0,
    ):
        labels = [x.item() if hasattr(x, "item") else x for x in labels]
        if batch_speakers < 1:
            raise SSVInputError(
                "batch_speakers", f"is {batch_speakers}; expected >= 1"
            )
        if not 0 <= rank < num_replicas:
            raise SSVInputError(
                "rank", f"is {rank}; expected 0 <= rank < {num_replicas}"
            )
        self.labels = labels
        self.batch_speakers = int(batch_speakers)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.allow_single = bool(allow_single)
        self.max_pairs_per_speaker = max_pairs_per_speaker
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = int(epoch)
        by_spk = {}
        for idx, lab in enumerate(labels):
            by_spk.setdefault(lab, []).append(idx)
        # Sorted by label so the plan does not depend on dataset order.
        self._speakers = [by_spk[k] for k in sorted(by_spk, key=str)]
        n_usable = sum(
            1 for u in self._speakers if len(u) >= 2 or self.allow_single
        )
        if n_usable < self.batch_speakers:
            raise SSVInputError(
                "batch_speakers",
                f"is {batch_speakers} but only {n_usable} speakers have "
                f"{'an utterance' if self.allow_single else 'two utterances'};"
                " lower batch_speakers",
            )
        self._fingerprint = _fingerprint(labels)
        self._cache = None

    @classmethod
    def from_dataset(cls, dataset, batch_speakers, key="spk_id", **kwargs):
        """Build from a ``DynamicItemDataset`` whose CSV has a label column.

        Reads the raw column (no audio is loaded).

        Arguments
        ---------
        dataset : speechbrain.dataio.dataset.DynamicItemDataset
            The training set.
        batch_speakers : int
            Speakers per batch.
        key : str
            Column with the speaker label.
        **kwargs
            Other :class:`SpeakerPairSampler` arguments.

        Returns
        -------
        SpeakerPairSampler
        """
        try:
            labels = [dataset.data[i][key] for i in dataset.data_ids]
        except KeyError:
            raise SSVInputError(
                key,
                "is not a column of the dataset; expected the speaker "
                "label column (spk_id)",
            ) from None
        return cls(labels, batch_speakers, **kwargs)

    def set_epoch(self, epoch):
        """Select the epoch (called by SpeechBrain's ``Brain`` every epoch).

        Arguments
        ---------
        epoch : int
            Epoch number.
        """
        self.epoch = int(epoch)

    def _speaker_pairs(self, rng):
        pairs = []
        for utts in self._speakers:
            if len(utts) == 1:
                if self.allow_single:
                    pairs.append([(utts[0], utts[0])])
                continue
            order = [utts[i] for i in rng.permutation(len(utts))]
            mine = [
                (order[i], order[i + 1]) for i in range(0, len(order) - 1, 2)
            ]
            if len(order) % 2:
                # Pair the odd one out with a different utterance of the
                # same speaker, so no utterance is skipped this epoch.
                mate = order[int(rng.integers(len(order) - 1))]
                mine.append((order[-1], mate))
            if self.max_pairs_per_speaker is not None:
                mine = mine[: int(self.max_pairs_per_speaker)]
            pairs.append(mine)
        return pairs

    @staticmethod
    def _max_batches(counts, k):
        """Largest ``B`` with ``sum(min(c, B)) >= k B``: the most batches of
        ``k`` distinct speakers that pair counts ``c`` allow."""
        lo, hi = 0, int(counts.sum()) // k
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if np.minimum(counts, mid).sum() >= k * mid:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _global_batches(self, epoch):
        rng = np.random.default_rng([self.seed, epoch])
        per_spk = self._speaker_pairs(rng)
        counts = np.array([len(p) for p in per_spk], dtype=np.int64)
        taken = np.zeros(len(per_spk), dtype=np.int64)
        k = self.batch_speakers
        batches = []
        for left in range(self._max_batches(counts, k), 0, -1):
            # Keep `left - 1` more batches possible: with slack
            # sum(min(c, left)) - k left, at least (#speakers with
            # c >= left) - slack of them must be in this batch.
            slack = int(np.minimum(counts, left).sum()) - k * left
            big = np.flatnonzero(counts >= left)
            n_big = max(0, len(big) - slack)
            chosen = np.empty(0, dtype=np.int64)
            if n_big:
                p = counts[big] / counts[big].sum()
                chosen = rng.choice(big, size=n_big, replace=False, p=p)
            pool = np.setdiff1d(np.flatnonzero(counts > 0), chosen)
            if k > n_big:
                # The others in proportion to the pairs they have left.
                p = counts[pool] / counts[pool].sum()
                rest = rng.choice(pool, size=k - n_big, replace=False, p=p)
                chosen = np.concatenate([chosen, rest])
            chosen = rng.permutation(chosen)
            batches.append([per_spk[s][taken[s]] for s in chosen])
            taken[chosen] += 1
            counts[chosen] -= 1
        alive = np.flatnonzero(counts > 0)
        if len(alive) and not self.drop_last:
            batches.append(
                [per_spk[s][taken[s]] for s in rng.permutation(alive)]
            )
        return [[int(i) for pair in b for i in pair] for b in batches]

    def _batches(self):
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._global_batches(self.epoch))
        batches = self._cache[1]
        if self.num_replicas == 1:
            return batches
        n_each = len(batches) // self.num_replicas
        return batches[self.rank :: self.num_replicas][:n_each]

    def __iter__(self):
        """Yield this rank's batches of the current epoch.

        Yields
        ------
        list of int
            ``2 K`` dataset indices, in speaker pairs.
        """
        yield from (list(b) for b in self._batches())

    def __len__(self):
        """Number of batches this rank yields in the current epoch.

        Returns
        -------
        int
        """
        return len(self._batches())

    def state_dict(self):
        """What a resume needs.

        Returns
        -------
        dict
            ``seed``, ``epoch`` and a fingerprint of the labels.
        """
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "labels": self._fingerprint,
        }

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`.

        Arguments
        ---------
        state : dict
            From :meth:`state_dict`.
        """
        if state.get("labels") not in (None, self._fingerprint):
            raise SSVInputError(
                "SpeakerPairSampler checkpoint",
                "was saved for another training set (label fingerprint "
                f"{state.get('labels')} != {self._fingerprint}); prepare the "
                "same CSV or start a new experiment folder",
            )
        self.seed = int(state["seed"])
        self.set_epoch(state["epoch"])

    @mark_as_saver
    def _save(self, path):
        write_json(path, self.state_dict())

    @mark_as_loader
    def _load(self, path, end_of_epoch=False):
        del end_of_epoch  # The Brain calls set_epoch at each epoch start.
        with open(os.fspath(path), encoding="utf-8") as f:
            self.load_state_dict(json.load(f))
