"""Stage 2 of the pseudo-label recipe: the yaml's clustering method
(:func:`method_name`) applied to the representations of stage 1
(:func:`cluster_representations`), and the multi-objective model built from
the yaml's ``clustering_hparams`` and trained (:func:`train_clustering_model`).

``train.py`` runs it inside its resumable stage (``pseudo_label_stage``);
the bench (``bench/bench_clustering.py``) and the tests call it through
``train.py``, so they run exactly the recipe's path. It is a module of the
recipe, not of the library: the library keeps the clustering models and
baselines it calls (ARCHITECTURE.md, "Orchestration lives in the recipes").

Authors
 * speechbrain-ssv developers 2026
"""

import functools
import inspect
import os

import numpy as np
from speechbrain.utils.epoch_loop import EpochCounter

from speechbrain_ssv.brains.clustering import (
    REQUIRED_HPARAMS,
    ClusteringBrain,
    clustering_dataset,
    fit_to_assignment,
    vat_radii,
)
from speechbrain_ssv.clustering.baselines import METHODS, cluster
from speechbrain_ssv.clustering.pseudolabels import (
    ORACLE,
    oracle_labels,
    scale_features,
)
from speechbrain_ssv.lobes.clustering import RunningMarginal
from speechbrain_ssv.utils.checkpoints import AtomicCheckpointer
from speechbrain_ssv.utils.errors import HparamsError

#: Name of the multi-objective clustering method (the paper's).
OURS = "ours"


def method_name(method):
    """``(name, options)`` of the yaml's ``clustering_method``: ``"ours"``
    for ``ClusteringBrain`` (a subclass: its class name), ``"oracle"`` for
    ``oracle_labels`` (the true speakers), a baseline's ``method`` and
    options for a partial of :func:`speechbrain_ssv.clustering.baselines.cluster`.
    The name makes the stage's folder (``clustering_<name>``), record and
    seed."""
    if inspect.isclass(method) and issubclass(method, ClusteringBrain):
        return (OURS if method is ClusteringBrain else method.__name__), {}
    if method is oracle_labels:
        return ORACLE, {}
    if (
        isinstance(method, functools.partial)
        and method.func is cluster
        and not method.args
        and method.keywords.get("method") in METHODS
    ):
        options = dict(method.keywords)
        return options.pop("method"), options
    raise HparamsError(
        "clustering_method",
        f"is {method!r}; expected "
        "!name:speechbrain_ssv.brains.clustering.ClusteringBrain (ours), "
        "!name:speechbrain_ssv.clustering.pseudolabels.oracle_labels (the "
        "true speakers) or a baseline (!ref <clustering_baseline>: "
        "!name:speechbrain_ssv.clustering.baselines.cluster with method: one "
        f"of {', '.join(METHODS)} and its options)",
    )


def cluster_representations(
    method,
    features,
    n_clusters,
    *,
    l2_normalize,
    standardize,
    center,
    seed,
    model_factory=None,
    clustering_hparams=None,
    opt_class=None,
    work_dir=None,
    true=None,
    aug_features=None,
    device="cpu",
    precision="fp32",
    progress=False,
    train_logger=None,
):
    """Cluster ``[N, D]`` representations into at most ``n_clusters``.

    ``method`` is the yaml's ``clustering_method`` (:func:`method_name`):
    ``ClusteringBrain`` trains the multi-objective model
    (:func:`train_clustering_model`); ``oracle_labels`` returns the true
    speakers (the upper-bound row); a partial of
    :func:`speechbrain_ssv.clustering.baselines.cluster` runs that
    baseline. Inputs are scaled first
    (:func:`speechbrain_ssv.clustering.pseudolabels.scale_features`).

    Returns
    -------
    dict
        ``labels`` (``[N]`` int64 numpy, compacted to ``0..K-1``) and
        ``history`` (per-epoch reports of ``"ours"``, else ``None``).
    """
    name, _ = method_name(method)
    if name == ORACLE:
        if true is None:
            raise HparamsError(
                "clustering_method",
                f"is {ORACLE!r}, which needs the manifests' spk_id column",
            )
        return {"labels": oracle_labels(true), "history": None}
    x = scale_features(features, l2_normalize, standardize, center)
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, D]; got {tuple(x.shape)}")
    if isinstance(method, functools.partial):  # a baseline
        labels = method(x.numpy(), n_clusters=n_clusters, seed=seed)
        return {"labels": np.asarray(labels, dtype=np.int64), "history": None}
    aug = None
    if aug_features is not None:
        aug = scale_features(aug_features, l2_normalize, standardize, center)
    brain = train_clustering_model(
        x,
        n_clusters,
        clustering_hparams,
        model_factory,
        opt_class,
        brain_class=method,
        seed=seed,
        work_dir=work_dir,
        true=true,
        aug=aug,
        device=device,
        precision=precision,
        progress=progress,
        train_logger=train_logger,
    )
    # eval_features is x: the last epoch's report already assigned it.
    return {
        "labels": oracle_labels(brain.predict().numpy()),
        "history": brain.history,
    }


#: Settings of clustering_hparams that shape the training set and the run
#: around ClusteringBrain (whose own settings are
#: speechbrain_ssv.brains.clustering.REQUIRED_HPARAMS). The yamls set all.
BUILD_KEYS = (
    "number_of_epochs", "batch_size", "vat_radius", "knn_k", "knn_scale",
    "knn_reference", "marginal_samples_per_cluster", "warm_start",
)  # fmt: skip


#: Settings of ClusteringBrain that train_clustering_model sets from the
#: run itself (the recipe seed, the epoch counter, the stage's files).
SET_BY_THE_RECIPE = ("seed", "epoch_counter", "history_file", "plot_file")


def train_clustering_model(
    x,
    n_clusters,
    settings,
    model_factory,
    opt_class,
    *,
    brain_class=ClusteringBrain,
    seed,
    work_dir=None,
    true=None,
    aug=None,
    device="cpu",
    precision="fp32",
    progress=False,
    train_logger=None,
):
    """Build the ClusteringBrain of the yaml and train it on ``x``.

    Arguments
    ---------
    x : torch.Tensor
        ``[N, D]`` scaled features.
    n_clusters : int
        ``C``.
    settings : dict
        The yaml's ``clustering_hparams``: the keys of :data:`BUILD_KEYS`
        and of ``ClusteringBrain``'s ``REQUIRED_HPARAMS`` (but ``seed``,
        ``epoch_counter``, ``history_file``, ``plot_file``: set here).
    model_factory : callable
        The yaml's ``clustering_model``: ``(input_dim=, n_clusters=)`` ->
        module.
    opt_class : callable
        The yaml's ``clustering_opt_class``.
    brain_class : type
        The yaml's ``clustering_method``: ``ClusteringBrain`` or a subclass.
    seed : int
        The recipe seed.
    work_dir : str | None
        Checkpoints, history and Fig. 3 plot (a killed run resumes).
    true : sequence | None
        True classes, for the per-epoch metrics only.
    aug : torch.Tensor | None
        ``[N, D]`` scaled second view (augmentation terms).
    device, precision, progress, train_logger
        Run options.

    Returns
    -------
    ClusteringBrain
        Trained.
    """
    settings = dict(settings or {})
    set_here = set(SET_BY_THE_RECIPE)
    clash = sorted(set_here & set(settings))
    missing = sorted(
        (set(BUILD_KEYS) | set(REQUIRED_HPARAMS)) - set(settings) - set_here
    )
    unknown = sorted(set(settings) - set(BUILD_KEYS) - set(REQUIRED_HPARAMS))
    if clash or missing or unknown:
        raise HparamsError(
            "clustering_hparams",
            f"missing {missing}, unknown {unknown}, set by the recipe "
            f"{clash}: list every setting of BUILD_KEYS and "
            "ClusteringBrain's REQUIRED_HPARAMS except seed, epoch_counter, "
            "history_file and plot_file",
        )
    if model_factory is None or opt_class is None:
        raise HparamsError(
            "clustering_model / clustering_opt_class",
            "missing: the yaml builds the clustering model and its optimizer",
        )
    n, dim = x.shape
    batch = min(int(settings["batch_size"]), n)
    model = model_factory(input_dim=dim, n_clusters=n_clusters)
    marginal = RunningMarginal(
        n_clusters,
        momentum=RunningMarginal.momentum_for(
            n_clusters, batch, settings["marginal_samples_per_cluster"]
        ),
    )
    counter = EpochCounter(int(settings["number_of_epochs"]))
    brain_hp = {k: settings[k] for k in REQUIRED_HPARAMS if k in settings}
    brain_hp.update(seed=seed, epoch_counter=counter)
    brain_hp["history_file"] = brain_hp["plot_file"] = None
    checkpointer = None
    if work_dir is not None:
        os.makedirs(work_dir, exist_ok=True)
        checkpointer = AtomicCheckpointer(
            os.path.join(work_dir, "ckpt"),
            recoverables={
                "model": model,
                "marginal": marginal,
                "counter": counter,
            },
        )
        brain_hp["history_file"] = os.path.join(work_dir, "history.json")
        brain_hp["plot_file"] = os.path.join(
            work_dir, "metrics_over_epochs.png"
        )
    if train_logger is not None:
        brain_hp["train_logger"] = train_logger
    warm = settings["warm_start"]
    fresh = checkpointer is None or checkpointer.find_checkpoint() is None
    if warm and fresh:
        extra = sorted(set(warm) - {"method", "epochs", "lr", "options"})
        if extra or not {"method", "epochs", "lr"} <= set(warm):
            raise HparamsError(
                "clustering_hparams: warm_start",
                f"is {warm!r}; expected keys method, epochs, lr and "
                "optionally options",
            )
        start = cluster(x.numpy(), warm["method"], n_clusters, seed=seed,
                        **(warm.get("options") or {}))  # fmt: skip
        fit_to_assignment(model, x, start, warm["epochs"], warm["lr"], batch,
                          seed, device)  # fmt: skip
    radius = settings["vat_radius"]
    if radius == "knn":
        radii = vat_radii(
            x.to(device),
            k=settings["knn_k"],
            scale=settings["knn_scale"],
            reference_size=settings["knn_reference"],
            seed=seed,
        ).cpu()
    else:
        try:
            radii = float(radius)
        except (TypeError, ValueError):
            raise HparamsError(
                "clustering_hparams: vat_radius",
                f"is {radius!r}; expected 'knn' or a number",
            ) from None
    use_aug = aug is not None and any(
        settings[k] for k in ("infonce_weight", "aug_weight", "vicreg_weight")
    )
    brain = brain_class(
        modules={"model": model, "marginal": marginal},
        opt_class=opt_class,
        hparams=brain_hp,
        run_opts={
            "device": device,
            "precision": precision,
            "noprogressbar": not progress,
        },
        checkpointer=checkpointer,
        eval_features=x,
        true_labels=true,
    )
    brain.fit(
        counter,
        clustering_dataset(x, radii, aug if use_aug else None),
        train_loader_kwargs={
            "batch_size": batch,
            "shuffle": True,
            "drop_last": n > batch,
        },
    )
    return brain
