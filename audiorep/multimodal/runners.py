"""Which runner trains a sentiment head: the library side of ``audiorep downstream --task sentiment --head H``.

The probe heads (mean-linear, mean-mlp) run through :func:`audiorep.probe.run.run_downstream`. The heads here
read speech and transcript with the upstream frozen:

- ``selfmm`` / ``dmd`` / ``deepmlf``: :func:`audiorep.multimodal.fusion_run.run` over a :class:`FusionConfig`
  (several seeds, mean ± std). Only the settings given on the command line override the FusionConfig's own
  defaults: the probe's defaults (e.g. lr 1e-2) are tuned for linear probes, not for these heads.
- ``teasel``: :func:`audiorep.multimodal.teasel_run.run_finetune`; the upstream becomes TEASEL's speech front end.

:func:`plan` picks the head's config and runner; the caller may print the config (``--print-config``) or run it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import ConfigError

FUSION_HEADS = ("selfmm", "dmd", "deepmlf")  # fusion_run heads reachable from `audiorep downstream`
SENTIMENT_HEADS = FUSION_HEADS + ("teasel",)
# DownstreamConfig fields that carry over to a FusionConfig when given (same names in both)
FUSION_SETTINGS = ("head", "data", "upstream", "mode", "layer", "out_dir", "epochs", "batch_size", "lr", "max_utts",
                   "device")


@dataclass
class SentimentPlan:
    """A resolved sentiment-head run: its config (FusionConfig or TeaselRunConfig) and how to run and report it."""

    config: Any  # the head's own config, fully resolved
    run: Callable[[], dict[str, Any]]  # trains and evaluates; returns the runner's results dict
    summary: Callable[[dict[str, Any]], list[str]]  # results -> "key: value" lines for stdout


def check_sentiment_head(head: str, task: str, mode: str) -> None:
    """The fusion and TEASEL heads read speech + transcript with the upstream frozen."""
    if task != "sentiment":
        raise ConfigError(f"--head {head} is a sentiment head (speech + transcript); task is {task!r}")
    if mode == "finetune":
        raise ConfigError(f"--head {head} keeps the upstream frozen: use --mode weighted-sum, last or layer")


def _device(device: str | None) -> str | None:
    """``auto`` -> cuda when available, else cpu (the fusion and TEASEL configs take a concrete device)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def plan(head: str, settings: dict[str, Any], config: str | os.PathLike | None = None,
         overrides: Sequence[str] = ()) -> SentimentPlan:
    """The run behind ``audiorep downstream --task sentiment --head HEAD``.

    ``settings``: the command line's DownstreamConfig fields (None = not given). Fusion heads read ``config`` and
    ``overrides`` as FusionConfig YAML / fields; TEASEL reads them as a DownstreamConfig and translates it.
    """
    from ..config import load

    if head not in SENTIMENT_HEADS:
        raise ConfigError(f"--head {head!r}: not a sentiment head ({', '.join(SENTIMENT_HEADS)})")
    if head in FUSION_HEADS:
        from . import fusion_run

        check_sentiment_head(head, settings.get("task") or "sentiment", settings.get("mode") or "last")
        given = {k: settings.get(k) for k in FUSION_SETTINGS}
        given["head"], given["device"] = head, _device(given["device"])
        flags = [f"{k}={v}" for k, v in given.items() if v is not None]
        cfg = load(fusion_run.FusionConfig, config, flags + list(overrides))
        return SentimentPlan(cfg, lambda: fusion_run.run(cfg), _fusion_summary)
    from ..probe.run import DownstreamConfig

    flags = [f"{k}={v}" for k, v in settings.items() if v is not None]
    probe = load(DownstreamConfig, config, flags + list(overrides))
    check_sentiment_head(head, probe.task, probe.mode)
    cfg = teasel_config(probe)
    from . import teasel_run

    return SentimentPlan(cfg, lambda: teasel_run.run_finetune(cfg), lambda res: _teasel_summary(cfg, res))


def teasel_config(probe: Any) -> Any:
    """A DownstreamConfig (sentiment, frozen upstream) -> the TeaselRunConfig fine-tuning TEASEL on it."""
    from .teasel_config import TeaselRunConfig

    layer = None if probe.mode == "weighted-sum" else (-1 if probe.mode == "last" else probe.layer)
    front = {"front_end": "wav2vec2"} if probe.upstream == "wav2vec2" else {
        "front_end": "upstream", "upstream": probe.upstream, "upstream_layer": layer}
    return TeaselRunConfig(data=probe.data, train_split=probe.train_split, dev_split=probe.dev_split,
                           test_split=probe.test_split, seed=probe.seed, batch_size=probe.batch_size,
                           epochs=probe.epochs, device=_device(probe.device), out_dir=str(probe.run_dir()), **front)


def _fusion_summary(res: dict[str, Any]) -> list[str]:
    lines = [f"test_{k}: {mean:.4f} ± {std:.4f}" for k, (mean, std) in res["summary"].items()]
    return lines + [f"seeds: {' '.join(str(r['seed']) for r in res['runs'])}"]


def _teasel_summary(cfg: Any, res: dict[str, Any]) -> list[str]:
    lines = [f"test_{k}: {v:.4f}" for k, v in res["test"].items()]
    return lines + [f"best_epoch: {res['best_epoch']}", f"run_dir: {cfg.out_dir}"]
