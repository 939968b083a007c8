"""Noise and room-impulse-response sets decoded once into memory.

SpeechBrain's ``AddNoise`` / ``AddReverb`` read their files through a
DataLoader while training: each time the (small) set is exhausted they build
a new iterator, and with ``num_workers > 0`` that forks worker processes
again inside the training step (a process holding a CUDA context, on a GPU).
An :class:`AugmentBank` decodes a SpeechBrain noise/RIR CSV once per process
into one flat float32 tensor (or a memory-mapped ``.npy`` for sets such as
MUSAN / RIRS_NOISES, shared by every process of a node through the page
cache) and samples from it with torch's RNG: no file I/O and no process
creation in a training step.

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import json
import logging
import os

import numpy as np
import torch

from speechbrain_ssv.data.audio import audio_info, read_audio_checked
from speechbrain_ssv.utils.errors import AudioFileError, ManifestError
from speechbrain_ssv.utils.io import atomic_path, write_json

logger = logging.getLogger(__name__)


class AugmentBank:
    """The waveforms of a SpeechBrain noise or RIR CSV (columns ``ID``,
    ``wav``; ``$`` placeholders resolved by ``replacements``), decoded once.

    Loading is lazy (:meth:`load`), because recipes build the bank from the
    yaml before the CSV is prepared; ``prepare_augmentation_data`` loads it
    before training starts, so bad input fails there, naming the file.

    Arguments
    ---------
    csv_file : str
        The CSV (SpeechBrain's noise/RIR format).
    sample_rate : int
        Required sampling rate of every file: a file at another rate is an
        error (resample the set first), not a silent resampling.
    cache_file : str | None
        A ``.npy`` path: the decoded samples are written there once
        (atomically) and memory-mapped, so large sets are not held in RAM
        once per process. ``None`` keeps them in this process's memory.
    max_seconds : float | None
        Keep at most this many seconds of each file (RIR tails, long noise).
    replacements : dict | None
        ``{"data_root": "/path"}`` for ``$data_root`` in the CSV's paths.
    max_device_mb : float
        A bank of at most this size is copied once to the device of the
        waveforms it augments, so crops are gathered there (on a GPU, a
        host-side gather plus copy per step cost more than the model's
        step); a larger one stays in host memory and only its crops move.

    Example
    -------
    >>> import os
    >>> from speechbrain_ssv.utils.io import write_wav, write_text
    >>> d = getfixture("tmpdir")
    >>> write_wav(os.path.join(d, "n.wav"), np.ones(800) * 0.1, 16000)
    >>> write_text(os.path.join(d, "noise.csv"),
    ...            "ID,duration,wav\\nn,0.05," + os.path.join(d, "n.wav") + "\\n")
    >>> bank = AugmentBank(os.path.join(d, "noise.csv")).load()
    >>> len(bank), bank.total_samples
    (1, 800)
    >>> bank.crops(torch.tensor([0, 0]), 1000).shape  # tiled past its end
    torch.Size([2, 1000])
    """

    def __init__(
        self,
        csv_file,
        sample_rate=16000,
        cache_file=None,
        max_seconds=None,
        replacements=None,
        max_device_mb=1024,
    ):
        self.csv_file = csv_file
        self.sample_rate = sample_rate
        self.cache_file = cache_file
        self.max_seconds = max_seconds
        self.replacements = dict(replacements or {})
        self.max_device_mb = max_device_mb
        self._on_device = {}
        self.samples = None
        self.offsets = None
        self.lengths = None
        self.ids = None

    # ----------------------------------------------------------------- loading
    def _rows(self):
        path = os.fspath(self.csv_file)
        if not os.path.isfile(path):
            raise ManifestError(
                path,
                "augmentation CSV does not exist (generate the corpus with "
                "python -m speechbrain_ssv.minivox, or prepare MUSAN / "
                "RIRS_NOISES and point the yaml at their CSV)",
            )
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "wav" not in reader.fieldnames:
                raise ManifestError(
                    path, "has no 'wav' column; expected ID,duration,wav,..."
                )
            rows = list(reader)
        if not rows:
            raise ManifestError(
                path, "lists no audio file; expected at least one row"
            )
        out = []
        for n, row in enumerate(rows, start=2):
            wav = row["wav"] or ""
            for key, value in self.replacements.items():
                wav = wav.replace(f"${key}", str(value))
            if not wav:
                raise ManifestError(f"{path}, line {n}", "empty 'wav' field")
            out.append((row.get("ID") or f"row{n}", wav))
        return out

    def _max_samples(self):
        if self.max_seconds is None:
            return None
        return max(1, int(round(self.max_seconds * self.sample_rate)))

    def _index(self, rows):
        """Lengths from the headers (no decoding), checking each file."""
        limit = self._max_samples()
        lengths = []
        for _, wav in rows:
            try:
                info = audio_info(wav, expected_sr=self.sample_rate)
            except AudioFileError as err:
                raise AudioFileError(
                    err.where, f"{err.problem} (listed in {self.csv_file})"
                ) from None
            n = info.frames if limit is None else min(info.frames, limit)
            lengths.append(n)
        return np.asarray(lengths, dtype=np.int64)

    def _decode_into(self, rows, lengths, out):
        pos = 0
        for (_, wav), n in zip(rows, lengths):
            sig = read_audio_checked(
                wav, stop=int(n), expected_sr=self.sample_rate
            )
            out[pos : pos + n] = sig.numpy()[:n]
            pos += n

    def load(self):
        """Decode the set (once; later calls return at once).

        Returns
        -------
        AugmentBank
            ``self``.
        """
        if self.samples is not None:
            return self
        rows = self._rows()
        lengths = self._index(rows)
        total = int(lengths.sum())
        if self.cache_file:
            samples = self._cached(rows, lengths, total)
        else:
            samples = np.empty(total, dtype=np.float32)
            self._decode_into(rows, lengths, samples)
        self.samples = torch.from_numpy(samples)
        self.lengths = torch.from_numpy(lengths)
        self.offsets = torch.cumsum(self.lengths, 0) - self.lengths
        self.ids = [r[0] for r in rows]
        logger.info(
            "%s: %d files, %.1f s in memory%s",
            self.csv_file,
            len(rows),
            total / self.sample_rate,
            f" (memory-mapped from {self.cache_file})"
            if self.cache_file
            else "",
        )
        return self

    def _cached(self, rows, lengths, total):
        """Decode to ``cache_file`` once; memory-map it. A cache whose index
        (files, lengths, rate) differs from this CSV's is rebuilt."""
        index = {
            "csv": os.path.abspath(self.csv_file),
            "files": [w for _, w in rows],
            "lengths": lengths.tolist(),
            "sample_rate": self.sample_rate,
        }
        index_file = self.cache_file + ".json"
        current = None
        if os.path.isfile(index_file) and os.path.isfile(self.cache_file):
            try:
                with open(index_file, encoding="utf-8") as f:
                    current = json.load(f)
            except (OSError, ValueError):
                current = None
        if current != index:
            os.makedirs(
                os.path.dirname(os.path.abspath(self.cache_file)),
                exist_ok=True,
            )
            with atomic_path(self.cache_file) as tmp:
                # open_memmap writes the .npy header; the tmp name keeps a
                # half-written cache invisible.
                out = np.lib.format.open_memmap(
                    tmp, mode="w+", dtype=np.float32, shape=(total,)
                )
                self._decode_into(rows, lengths, out)
                out.flush()
                del out
            write_json(index_file, index)
        # Copy-on-write: a writable array for torch.from_numpy, while the
        # pages stay shared with the file (nothing here writes to them).
        return np.load(self.cache_file, mmap_mode="c")

    # ---------------------------------------------------------------- sampling
    def __len__(self):
        self._require_loaded()
        return len(self.lengths)

    @property
    def total_samples(self):
        """Samples held (all files)."""
        self._require_loaded()
        return int(self.samples.shape[0])

    def _require_loaded(self):
        if self.samples is None:
            raise RuntimeError(
                f"AugmentBank({self.csv_file}) is not loaded: call load() "
                "first (prepare_augmentation_data does, before training)"
            )

    def draw(self, n, generator=None):
        """Draw ``n`` file indices uniformly (with replacement).

        Arguments
        ---------
        n : int
            How many.
        generator : torch.Generator | None
            CPU generator (default: torch's global RNG).

        Returns
        -------
        torch.Tensor
            ``[n]`` int64 indices.
        """
        return torch.randint(len(self), (n,), generator=generator)

    def source(self, device):
        """The samples to gather from for waveforms on ``device``: a copy
        made once on that device when the bank is small enough, else the
        host tensor.

        Arguments
        ---------
        device : torch.device | str
            Device of the waveforms.

        Returns
        -------
        torch.Tensor
            Flat float32 samples.
        """
        self._require_loaded()
        device = torch.device(device)
        if device.type == "cpu":
            return self.samples
        if device not in self._on_device:
            size_mb = self.samples.numel() * 4 / 2**20
            self._on_device[device] = (
                self.samples.to(device)
                if size_mb <= self.max_device_mb
                else None
            )
        on_device = self._on_device[device]
        return self.samples if on_device is None else on_device

    def crops(self, index, length, generator=None, device="cpu"):
        """A random ``length``-sample window of each chosen file; files
        shorter than ``length`` are tiled (repeated) to fill it.

        Arguments
        ---------
        index : torch.Tensor
            ``[n]`` file indices (CPU).
        length : int
            Samples per crop.
        generator : torch.Generator | None
            CPU generator for the start offsets.
        device : torch.device | str
            Where the crops are wanted.

        Returns
        -------
        torch.Tensor
            ``[n, length]`` float32 on ``device``.
        """
        self._require_loaded()
        samples = self.source(device)
        lens = self.lengths[index]
        start = (
            torch.rand(len(index), generator=generator) * lens.clamp(min=1)
        ).long()
        # Index arithmetic where the samples are: [n] values move, not
        # [n, length] indices.
        at = samples.device
        lens, start = lens.to(at), start.to(at)
        offsets = self.offsets[index].to(at)
        pos = torch.arange(length, device=at)[None, :] + start[:, None]
        flat = offsets[:, None] + pos % lens[:, None]
        return samples[flat.reshape(-1)].reshape(flat.shape).to(device)

    def whole(self, index, device="cpu"):
        """Each chosen file from its start, zero-padded to the longest.

        Arguments
        ---------
        index : torch.Tensor
            ``[n]`` file indices (CPU).
        device : torch.device | str
            Where the result is wanted.

        Returns
        -------
        tuple
            ``([n, L] float32 on device, [n] lengths in samples on CPU)``.
        """
        self._require_loaded()
        samples = self.source(device)
        lens = self.lengths[index]
        width = int(lens.max())
        at = samples.device
        pos = torch.arange(width, device=at)[None, :]
        valid = pos < lens.to(at)[:, None]
        offsets = self.offsets[index].to(at)[:, None]
        flat = torch.where(valid, offsets + pos, offsets)
        out = samples[flat.reshape(-1)].reshape(flat.shape) * valid
        return out.to(device), lens
