"""Audio and label pipelines for SpeechBrain's ``DynamicItemDataset``.

The manifests written by :mod:`speechbrain_ssv.data.voxceleb` hold one row
per file (``start = 0``, ``stop`` = number of samples); the crops are drawn
here, at loading time, so every epoch sees different windows of each file.

Randomness uses torch's global generator: ``speechbrain.utils.seed_everything``
(the recipes' ``seed``) controls it in the main process, and the DataLoader
derives each worker's seed from it, so runs are reproducible.

Self-supervised recipes build their data with
:func:`make_unlabelled_dataset`, which removes the label columns from the
dataset itself: ``spk_id`` cannot be requested by mistake.

Authors
 * speechbrain-ssv developers 2026
"""

import csv
import os

import torch
from speechbrain.dataio.dataio import load_data_csv
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.data_pipeline import provides, takes

from speechbrain_ssv.data.audio import read_audio_checked
from speechbrain_ssv.utils.errors import AudioFileError, ManifestError

REQUIRED_COLUMNS = ("ID", "wav", "start", "stop", "duration")
# Columns that identify the speaker; dropped from label-free datasets.
LABEL_COLUMNS = ("spk_id", "gender", "session")


def load_manifest(
    csv_path,
    data_folder=None,
    required=REQUIRED_COLUMNS,
    replacements=None,
    drop_columns=(),
):
    """Load a CSV manifest as a ``DynamicItemDataset``, with clear errors.

    Arguments
    ---------
    csv_path : str
        SpeechBrain-format CSV (an ``ID`` column, ``duration`` as float).
    data_folder : str | None
        Substituted for ``$data_root`` in the values, as SpeechBrain recipes
        do with ``replacements={"data_root": data_folder}``.
    required : sequence of str
        Columns that must be present.
    replacements : dict | None
        Further ``$name`` substitutions.
    drop_columns : sequence of str
        Columns removed from every row before the dataset is built, so no
        pipeline or output key can reach them.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        With no dynamic items and no output keys yet.

    Example
    -------
    >>> p = os.path.join(getfixture("tmpdir"), "m.csv")
    >>> _ = open(p, "w").write("ID,duration,wav,start,stop\\nu1,1.0,$data_root/a.wav,0,16000\\n")
    >>> ds = load_manifest(p, data_folder="/data")
    >>> ds.data["u1"]["wav"], ds.data["u1"]["duration"]
    ('/data/a.wav', 1.0)
    >>> load_manifest(p, required=("ID", "spk_id"))
    Traceback (most recent call last):
    ...
    speechbrain_ssv.utils.errors.ManifestError: ...m.csv: lacks the column(s) ['spk_id']; it has ['ID', 'duration', 'wav', 'start', 'stop']
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise ManifestError(
            csv_path, "manifest does not exist (run the data preparation first)"
        )
    with open(csv_path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f, skipinitialspace=True), None)
    if not header:
        raise ManifestError(csv_path, "is empty; expected a header and rows")
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if "ID" not in header and "ID" not in missing:
        missing.insert(0, "ID")
    if missing:
        raise ManifestError(
            csv_path, f"lacks the column(s) {missing}; it has {header}"
        )
    replacements = dict(replacements or {})
    if data_folder is not None:
        replacements.setdefault("data_root", os.fspath(data_folder))
    try:
        data = load_data_csv(csv_path, replacements)
    except (KeyError, ValueError) as err:
        raise ManifestError(csv_path, f"could not be parsed ({err})") from None
    if not data:
        raise ManifestError(
            csv_path, "has no rows; expected at least one utterance"
        )
    for row in data.values():
        for col in drop_columns:
            row.pop(col, None)
    return DynamicItemDataset(data)


def _segment(start, stop, wav):
    start, stop = int(start), int(stop)
    if stop <= start:
        raise AudioFileError(
            wav, f"manifest segment [{start}, {stop}) is empty"
        )
    return start, stop


def _tile(sig, n_samples):
    """Repeat ``sig`` until it has ``n_samples`` samples."""
    reps = -(-n_samples // sig.shape[0])
    return sig.repeat(reps)[:n_samples]


def crop_pipeline(
    crop_seconds, sample_rate=16000, random_crop=True, provides_key="sig"
):
    """Build a dynamic item reading a fixed-length crop of each segment.

    Only the crop is read from disk. A segment shorter than the crop is
    tiled (repeated) to the length, after a random circular shift when
    ``random_crop`` so that short files do not always start the same way.

    Arguments
    ---------
    crop_seconds : float
        Crop length in seconds.
    sample_rate : int
        Expected sampling rate of the files (checked).
    random_crop : bool
        ``True``: a uniformly random window inside ``[start, stop)``
        (training); ``False``: the centre window (validation).
    provides_key : str
        Output key of the item (``"sig"``; ``"view0"``... for multi-view).

    Returns
    -------
    speechbrain.utils.data_pipeline.DynamicItem
        Takes ``wav, start, stop``; provides a ``[n_samples]`` float tensor.

    Example
    -------
    >>> import numpy as np
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> p = os.path.join(getfixture("tmpdir"), "a.wav")
    >>> write_wav(p, np.linspace(0, 0.5, 16000), 16000)
    >>> crop = crop_pipeline(0.25, random_crop=False)
    >>> crop.func(p, "0", "16000").shape
    torch.Size([4000])
    >>> crop_pipeline(2.0).func(p, "0", "16000").shape
    torch.Size([32000])
    """
    n_samples = int(round(crop_seconds * sample_rate))
    if n_samples <= 0:
        raise ValueError(f"crop_seconds={crop_seconds} gives an empty crop")

    @takes("wav", "start", "stop")
    @provides(provides_key)
    def crop(wav, start, stop):
        """A crop of ``n_samples`` (zero-padded when shorter)."""
        start, stop = _segment(start, stop, wav)
        length = stop - start
        if length > n_samples:
            if random_crop:
                offset = int(torch.randint(0, length - n_samples + 1, (1,)))
            else:
                offset = (length - n_samples) // 2
            begin = start + offset
            sig = read_audio_checked(wav, begin, begin + n_samples, sample_rate)
        else:
            sig = read_audio_checked(wav, start, stop, sample_rate)
            if random_crop and sig.shape[0] > 1:
                shift = int(torch.randint(0, sig.shape[0], (1,)))
                sig = torch.roll(sig, shift)
        # Also covers a file shorter than its manifest's ``stop``.
        if sig.shape[0] < n_samples:
            sig = _tile(sig, n_samples)
        return sig

    return crop


def disjoint_crops_pipeline(
    crop_seconds, n_views, sample_rate=16000, provides_keys=None
):
    """Build a dynamic item reading ``n_views`` crops of each segment that
    share no sample.

    Independent random crops of a few-second utterance overlap most of the
    time (74 % of AP's query/anchor pairs on minivox), so a contrastive task
    can be solved by matching the same audio rather than the same voice.
    Here the views are disjoint windows: the free length ``L - n * crop`` is
    split into ``n + 1`` random gaps (a uniform random composition), and the
    windows are handed out in a random order, so ``view0`` is not always the
    earlier one. A segment shorter than ``n * crop`` is cut into ``n`` equal
    disjoint parts, each tiled to the crop length (they still share no
    audio). One read covers all views.

    Arguments
    ---------
    crop_seconds : float
        Length of each crop.
    n_views : int
        Number of crops (at least 2).
    sample_rate : int
        Expected sampling rate of the files (checked).
    provides_keys : list of str | None
        Output keys (default ``view0 .. view{n-1}``).

    Returns
    -------
    speechbrain.utils.data_pipeline.DynamicItem
        Takes ``wav, start, stop``; provides ``n_views`` ``[n_samples]``
        float tensors.

    Example
    -------
    >>> import numpy as np
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> p = os.path.join(getfixture("tmpdir"), "a.wav")
    >>> write_wav(p, np.arange(16000) / 16000, 16000)
    >>> a, b = disjoint_crops_pipeline(0.25, 2).func(p, "0", "16000")
    >>> a.shape, bool(set(a.tolist()).isdisjoint(b.tolist()))
    (torch.Size([4000]), True)
    """
    n_samples = int(round(crop_seconds * sample_rate))
    if n_samples <= 0:
        raise ValueError(f"crop_seconds={crop_seconds} gives an empty crop")
    if n_views < 2:
        raise ValueError(f"n_views={n_views}; disjoint crops need at least 2")
    keys = provides_keys or [f"view{i}" for i in range(n_views)]
    if len(keys) != n_views:
        raise ValueError(f"{len(keys)} keys for n_views={n_views}")

    @takes("wav", "start", "stop")
    @provides(*keys)
    def crops(wav, start, stop):
        """``n_views`` non-overlapping crops of ``n_samples``."""
        start, stop = _segment(start, stop, wav)
        length = stop - start
        slack = length - n_views * n_samples
        if slack >= 0:
            # n + 1 gaps summing to the slack: sorted uniform cut points.
            cuts = torch.sort(torch.randint(0, slack + 1, (n_views,))).values
            begins = [int(c) + i * n_samples for i, c in enumerate(cuts)]
            first, last = begins[0], begins[-1] + n_samples
            sig = read_audio_checked(
                wav, start + first, start + last, sample_rate
            )
            # A file shorter than its manifest's ``stop``: pad to the span.
            if sig.shape[0] < last - first:
                sig = _tile(sig, last - first)
            views = [sig[b - first : b - first + n_samples] for b in begins]
        else:
            sig = read_audio_checked(wav, start, stop, sample_rate)
            part = max(sig.shape[0] // n_views, 1)
            views = [
                _tile(sig[i * part : (i + 1) * part], n_samples)
                for i in range(n_views)
            ]
        order = torch.randperm(n_views).tolist()
        out = tuple(views[i] for i in order)
        return out

    return crops


def multicrop_disjoint_pipeline(
    global_seconds, local_seconds, n_global, n_local, sample_rate=16000
):
    """Build a dynamic item reading ``n_global`` global and ``n_local``
    local crops of each segment, the locals drawn outside the first global
    crop (the teacher's view in SDPN).

    With independent crops, a 1.5 s local view of a 5.5 s utterance (the
    minivox median) overlaps a 3 s global view most of the time, so the
    student can match the teacher on the same stretch of audio (its words)
    instead of on the speaker. Here each local starts uniformly among the
    positions that share no sample with ``global0``. When no such position
    exists, it takes the end of the segment farthest from ``global0``
    (least overlap). The globals are independent uniform crops. A segment
    shorter than a crop is tiled as in :func:`crop_pipeline`. The whole
    segment is read once.

    Arguments
    ---------
    global_seconds : float
        Length of the global crops.
    local_seconds : float
        Length of the local crops.
    n_global : int
        Number of global crops (``global0`` ...), at least 1.
    n_local : int
        Number of local crops (``local0`` ...), at least 1.
    sample_rate : int
        Expected sampling rate of the files (checked).

    Returns
    -------
    speechbrain.utils.data_pipeline.DynamicItem
        Takes ``wav, start, stop``; provides the crops.

    Example
    -------
    >>> import numpy as np
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> p = os.path.join(getfixture("tmpdir"), "a.wav")
    >>> write_wav(p, np.linspace(-0.5, 0.5, 16000), 16000)
    >>> crops = multicrop_disjoint_pipeline(0.5, 0.25, 1, 2)
    >>> g, l0, l1 = crops.func(p, "0", "16000")
    >>> g.shape, l0.shape, bool(np.intersect1d(g.numpy(), l0.numpy()).size)
    (torch.Size([8000]), torch.Size([4000]), False)
    """
    n_g = int(round(global_seconds * sample_rate))
    n_l = int(round(local_seconds * sample_rate))
    if n_g <= 0 or n_l <= 0:
        raise ValueError(
            f"global_seconds={global_seconds}, local_seconds={local_seconds}: "
            "crops must be non-empty"
        )
    if n_global < 1 or n_local < 1:
        raise ValueError(
            f"n_global={n_global}, n_local={n_local}; expected at least 1 each"
        )
    keys = [f"global{i}" for i in range(n_global)]
    keys += [f"local{i}" for i in range(n_local)]

    def window(sig, begin, n):
        """``n`` samples from ``begin``; a signal no longer than that is
        tiled after a random circular shift."""
        if sig.shape[0] <= n:
            shift = int(torch.randint(0, sig.shape[0], (1,)))
            return _tile(torch.roll(sig, shift), n)
        return sig[begin : begin + n]

    @takes("wav", "start", "stop")
    @provides(*keys)
    def crops(wav, start, stop):
        """The global crops, then locals outside ``global0``."""
        start, stop = _segment(start, stop, wav)
        sig = read_audio_checked(wav, start, stop, sample_rate)
        total = sig.shape[0]
        starts = [
            int(torch.randint(0, max(total - n_g, 0) + 1, (1,)))
            for _ in range(n_global)
        ]
        out = [window(sig, b, n_g) for b in starts]
        g0, g1 = starts[0], min(starts[0] + n_g, total)
        # Positions [0, g0 - n_l] before and [g1, total - n_l] after.
        before = max(g0 - n_l + 1, 0)
        after = max(total - n_l - g1 + 1, 0)
        for _ in range(n_local):
            if before + after > 0:
                k = int(torch.randint(0, before + after, (1,)))
                begin = k if k < before else g1 + (k - before)
            elif g0 >= total - g1:
                begin = 0
            else:
                begin = max(total - n_l, 0)
            out.append(window(sig, begin, n_l))
        return tuple(out)

    return crops


def full_pipeline(sample_rate=16000):
    """Build a dynamic item reading the whole ``[start, stop)`` segment.

    Arguments
    ---------
    sample_rate : int
        Expected sampling rate of the files (checked).

    Returns
    -------
    speechbrain.utils.data_pipeline.DynamicItem
        Takes ``wav, start, stop``; provides ``sig``.

    Example
    -------
    >>> import numpy as np
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> p = os.path.join(getfixture("tmpdir"), "a.wav")
    >>> write_wav(p, np.zeros(16000), 16000)
    >>> full_pipeline().func(p, "100", "16000").shape
    torch.Size([15900])
    """

    @takes("wav", "start", "stop")
    @provides("sig")
    def full(wav, start, stop):
        """The whole segment."""
        start, stop = _segment(start, stop, wav)
        return read_audio_checked(wav, start, stop, sample_rate)

    return full


def label_pipeline(label_encoder):
    """Build a dynamic item encoding ``spk_id`` as a class index.

    Arguments
    ---------
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Encoder (may still be filled after the pipeline is built).

    Returns
    -------
    speechbrain.utils.data_pipeline.DynamicItem
        Takes ``spk_id``; provides ``spk_id_encoded`` (LongTensor ``[1]``).

    Example
    -------
    >>> enc = CategoricalEncoder()
    >>> enc.update_from_iterable(["id1", "id2"])
    >>> enc.expect_len(2)
    >>> label_pipeline(enc).func("id2")
    tensor([1])
    """

    @takes("spk_id")
    @provides("spk_id_encoded")
    def encode(spk_id):
        """The encoded speaker label."""
        return label_encoder.encode_sequence_torch([spk_id])

    return encode


def make_supervised_datasets(
    train_csv,
    dev_csv,
    crop_seconds,
    label_encoder_path,
    data_folder=None,
    sample_rate=16000,
    dev_crop_seconds=None,
):
    """Build the training and validation datasets of a classifier recipe.

    Arguments
    ---------
    train_csv : str
        Training manifest (needs ``spk_id``).
    dev_csv : str
        Validation manifest over the same speakers.
    crop_seconds : float
        Random-crop length for training.
    label_encoder_path : str
        Where the speaker encoder is saved, or loaded from when it exists
        (DDP-safe ``CategoricalEncoder.load_or_create``).
    data_folder : str | None
        Value of ``$data_root`` in the manifests.
    sample_rate : int
        Expected sampling rate.
    dev_crop_seconds : float | None
        Centre-crop length for validation (default: ``crop_seconds``).

    Returns
    -------
    tuple
        ``(train_ds, dev_ds, label_encoder)``; both datasets output
        ``id, sig, spk_id_encoded``.

    Example
    -------
    >>> import numpy as np
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> tmp = str(getfixture("tmpdir"))
    >>> rows = ["ID,duration,wav,start,stop,spk_id"]
    >>> for i, spk in enumerate(["a", "b", "a"]):
    ...     write_wav(f"{tmp}/{i}.wav", np.zeros(8000), 16000)
    ...     rows.append(f"u{i},0.5,$data_root/{i}.wav,0,8000,{spk}")
    >>> _ = open(f"{tmp}/t.csv", "w").write("\\n".join(rows) + "\\n")
    >>> train, dev, enc = make_supervised_datasets(
    ...     f"{tmp}/t.csv", f"{tmp}/t.csv", 0.2, f"{tmp}/enc.txt", data_folder=tmp
    ... )
    >>> item = train[2]
    >>> item["sig"].shape, item["spk_id_encoded"], len(enc)
    (torch.Size([3200]), tensor([0]), 2)
    """
    required = REQUIRED_COLUMNS + ("spk_id",)
    train = load_manifest(train_csv, data_folder, required)
    dev = load_manifest(dev_csv, data_folder, required)
    train_spks = {row["spk_id"] for row in train.data.values()}
    unknown = sorted({row["spk_id"] for row in dev.data.values()} - train_spks)
    if unknown:
        raise ManifestError(
            dev_csv,
            f"{len(unknown)} speaker(s) absent from {train_csv} (e.g. "
            f"{unknown[:5]}); the classifier cannot score them",
        )

    label_encoder = CategoricalEncoder()
    train.add_dynamic_item(crop_pipeline(crop_seconds, sample_rate, True))
    if dev_crop_seconds is None:
        dev_crop_seconds = crop_seconds
    dev.add_dynamic_item(crop_pipeline(dev_crop_seconds, sample_rate, False))
    for ds in (train, dev):
        ds.add_dynamic_item(label_pipeline(label_encoder))

    label_encoder.load_or_create(
        path=label_encoder_path, from_didatasets=[train], output_key="spk_id"
    )
    # A stale encoder (saved for another training set) would silently
    # mislabel or crash mid-epoch: check it against the manifest.
    stale = sorted(s for s in train_spks if s not in label_encoder.lab2ind)
    if stale or len(label_encoder) != len(train_spks):
        raise ManifestError(
            label_encoder_path,
            f"holds {len(label_encoder)} labels but {train_csv} has "
            f"{len(train_spks)} speakers ({len(stale)} unknown); it belongs "
            "to another training set (e.g. speakers were added after this "
            "output folder was trained): train into a new --output_folder; "
            "only if this folder holds no checkpoint of the old set, delete "
            "it to rebuild it",
        )
    label_encoder.expect_len(len(train_spks))

    for ds in (train, dev):
        ds.set_output_keys(["id", "sig", "spk_id_encoded"])
    return train, dev, label_encoder


def make_unlabelled_dataset(
    train_csv,
    crop_seconds,
    n_views=1,
    data_folder=None,
    sample_rate=16000,
    random_crop=True,
    disjoint_views=False,
):
    """Build a label-free training dataset for self-supervised methods.

    The speaker columns (``spk_id``, ``gender``, ``session``) are removed
    from the dataset, so no pipeline or output key can use them. Note that
    VoxCeleb's ``ID`` and ``wav`` path still contain the speaker id by
    convention: methods must not parse them.

    Arguments
    ---------
    train_csv : str
        Training manifest.
    crop_seconds : float
        Length of each crop.
    n_views : int
        ``1``: output ``id, sig``; ``n > 1``: output ``id, view0 ...
        view{n-1}``, independent random crops of the same file.
    data_folder : str | None
        Value of ``$data_root`` in the manifest.
    sample_rate : int
        Expected sampling rate.
    random_crop : bool
        Random (training) or centre (validation) crops.
    disjoint_views : bool
        With ``n_views > 1`` and ``random_crop``: views that share no
        sample (:func:`disjoint_crops_pipeline`) instead of independent
        crops, which may overlap.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        The dataset with its output keys set.

    Example
    -------
    >>> import numpy as np
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> tmp = str(getfixture("tmpdir"))
    >>> write_wav(f"{tmp}/a.wav", np.zeros(16000), 16000)
    >>> _ = open(f"{tmp}/t.csv", "w").write(
    ...     f"ID,duration,wav,start,stop,spk_id\\nu1,1.0,{tmp}/a.wav,0,16000,id1\\n"
    ... )
    >>> ds = make_unlabelled_dataset(f"{tmp}/t.csv", 0.5, n_views=2)
    >>> sorted(ds[0])
    ['id', 'view0', 'view1']
    """
    if n_views < 1:
        raise ValueError(f"n_views={n_views}; expected at least 1")
    ds = load_manifest(
        train_csv, data_folder, REQUIRED_COLUMNS, drop_columns=LABEL_COLUMNS
    )
    keys = ["sig"] if n_views == 1 else [f"view{i}" for i in range(n_views)]
    if disjoint_views and n_views > 1 and random_crop:
        ds.add_dynamic_item(
            disjoint_crops_pipeline(crop_seconds, n_views, sample_rate, keys)
        )
    else:
        for key in keys:
            ds.add_dynamic_item(
                crop_pipeline(crop_seconds, sample_rate, random_crop, key)
            )
    ds.set_output_keys(["id"] + keys)
    return ds


def make_multicrop_dataset(
    train_csv,
    global_seconds,
    local_seconds,
    n_global=1,
    n_local=4,
    data_folder=None,
    sample_rate=16000,
    disjoint_locals=False,
):
    """Build a label-free multi-crop dataset (self-distillation: SDPN, DINO).

    Each item holds ``n_global`` long crops (``global0`` ...) and ``n_local``
    short crops (``local0`` ...) drawn independently from the same file, so
    views may overlap, as in the SDPN and DINO reference code. As in
    :func:`make_unlabelled_dataset`, the speaker columns are removed.

    Arguments
    ---------
    train_csv : str
        Training manifest.
    global_seconds : float
        Length of the global views.
    local_seconds : float
        Length of the local views.
    n_global : int
        Number of global views (at least 1).
    n_local : int
        Number of local views (at least 1).
    data_folder : str | None
        Value of ``$data_root`` in the manifest.
    sample_rate : int
        Expected sampling rate.
    disjoint_locals : bool
        Draw the local crops outside the first global crop
        (:func:`multicrop_disjoint_pipeline`) instead of independently.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        Output keys ``id, global0.., local0..``.

    Example
    -------
    >>> import numpy as np
    >>> from speechbrain_ssv.utils.io import write_wav
    >>> tmp = str(getfixture("tmpdir"))
    >>> write_wav(f"{tmp}/a.wav", np.zeros(16000), 16000)
    >>> _ = open(f"{tmp}/t.csv", "w").write(
    ...     f"ID,duration,wav,start,stop,spk_id\\nu1,1.0,{tmp}/a.wav,0,16000,id1\\n"
    ... )
    >>> ds = make_multicrop_dataset(f"{tmp}/t.csv", 0.5, 0.25, 1, 2)
    >>> item = ds[0]
    >>> sorted(item), item["global0"].shape, item["local1"].shape
    (['global0', 'id', 'local0', 'local1'], torch.Size([8000]), torch.Size([4000]))
    """
    if n_global < 1 or n_local < 1:
        raise ValueError(
            f"n_global={n_global}, n_local={n_local}; expected at least 1 each"
        )
    ds = load_manifest(
        train_csv, data_folder, REQUIRED_COLUMNS, drop_columns=LABEL_COLUMNS
    )
    keys = [f"global{i}" for i in range(n_global)]
    keys += [f"local{i}" for i in range(n_local)]
    if disjoint_locals:
        ds.add_dynamic_item(
            multicrop_disjoint_pipeline(
                global_seconds, local_seconds, n_global, n_local, sample_rate
            )
        )
    else:
        for key in keys:
            seconds = global_seconds if key.startswith("g") else local_seconds
            ds.add_dynamic_item(crop_pipeline(seconds, sample_rate, True, key))
    ds.set_output_keys(["id"] + keys)
    return ds
