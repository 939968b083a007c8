"""Clustering for pseudo-labels: i-vectors, classical baselines, metrics.

The multi-objective clustering model itself is a module
(:class:`speechbrain_ssv.lobes.clustering.ClusteringMLP`) trained with the
losses of :mod:`speechbrain_ssv.losses.clustering`.
"""

from speechbrain_ssv.clustering.baselines import (
    METHODS,
    QUADRATIC_MAX_N,
    assign_chunked,
    cluster,
)
from speechbrain_ssv.clustering.ivector import (
    IVectorExtractor,
    TotalVariability,
)
from speechbrain_ssv.clustering.metrics import (
    METRIC_NAMES,
    cluster_accuracy,
    clustering_report,
    contingency,
    plot_metrics_over_epochs,
    purity,
    write_report,
)
from speechbrain_ssv.clustering.ubm import DiagonalUBM, baum_welch_stats
