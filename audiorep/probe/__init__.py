"""Downstream evaluation of audiorep upstreams: featurizer (weighted-sum / finetune / single layer), probe heads,
phone / speaker / sentiment tasks, the train-eval loop, the probe table, and MMSA's sentiment metrics."""

from ..models.logmel import LogMelUpstream
from ..models.featurizer import MODES, Featurizer
from ..weights.loading import load_upstream
from .heads import FrameLinear, FrameMLP, MeanPoolLinear, MeanPoolMLP, build_head, mean_pool
from .plots import plot_layer_weights, plot_learning_curves
from .run import DownstreamConfig, DownstreamResult, load_config, run_downstream
from .tasks import TASKS, align_frame_labels, build_task

__all__ = [
    "DownstreamConfig", "DownstreamResult", "Featurizer", "FrameLinear", "FrameMLP", "LogMelUpstream", "MODES",
    "MeanPoolLinear", "MeanPoolMLP", "TASKS", "align_frame_labels", "build_head", "build_task", "load_config",
    "load_upstream", "mean_pool", "plot_layer_weights", "plot_learning_curves", "run_downstream",
]
