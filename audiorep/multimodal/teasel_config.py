"""Run configuration for TEASEL's LM building, LAA pretraining and fine-tuning (one dataclass, YAML-loadable)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..scoring import check_select_metric
from ..errors import ConfigError
from ..config import load
from ..validate import GRAD_CLIP, LR, SEED, WEIGHT_DECAY, check_ranges, ints, reals


@dataclass
class SmallRobertaConfig:
    """TEASEL's offline default masked LM: a small RoBERTa + byte-level BPE trained on the corpus transcripts
    (DeepMLF's decoder counterpart is :class:`audiorep.multimodal.text.SmallGPT2Config`)."""

    vocab_size: int = 1000  # BPE vocabulary incl. the 5 RoBERTa specials; the corpus is small
    hidden_size: int = 128  # also the prefix / LAA width with this LM
    num_layers: int = 2  # enough for short sentences; keeps the recipe well inside 15 CPU minutes
    num_heads: int = 2  # head dim 64, as in roberta-base
    intermediate_size: int = 512  # 4H
    max_positions: int = 130  # RoBERTa needs padding_idx + 1 + max tokens
    epochs: int = 40  # MLM passes over the transcripts (short sentences, a few hundred of them)
    batch_size: int = 32  # sentences per step
    lr: float = 5e-4  # from-scratch MLM on tiny data wants a large rate
    seed: int = 0  # tokenizer order and init

    def __post_init__(self) -> None:
        check_ranges(self, "small_lm", {
            "vocab_size": ints(8, 10**6, "tokens"), "hidden_size": ints(1, 2**16, "units"),
            "num_layers": ints(1, 1024, "layers"), "num_heads": ints(1, 1024, "heads"),
            "intermediate_size": ints(1, 2**18, "units"), "max_positions": ints(4, 2**20, "tokens"),
            "epochs": ints(1, 10**6, "epochs"), "batch_size": ints(1, 10**6, "sentences"), "lr": LR, "seed": SEED,
        })

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TeaselRunConfig:
    """Everything a TEASEL pretraining or fine-tuning run needs; fields unused by a stage are ignored."""

    # data
    data: str = "synth"  # get_corpus name or folder of split manifests with `text` and labels[label_key]
    train_split: str = "train"
    dev_split: str = "dev"
    test_split: str = "test"
    label_key: str = "sentiment"  # manifest labels key of the regression target
    metrics: str = "mosi"  # metric family: "mosi" ([-3, 3]) or "sims" ([-1, 1])
    max_text_tokens: int = 75  # the reimplementation's cap (incl. <s> and </s>)
    max_audio_seconds: float = 30.0  # the reimplementation's cap; longer audio is cut
    # language model
    # local RoBERTa folder (roberta-base), or "teasel-small": the cached small LM (trained if missing), the same
    # name FusionConfig.text_model uses for it
    text_model: str = "teasel-small"
    small_lm: SmallRobertaConfig = field(default_factory=SmallRobertaConfig)
    # speech front end
    front_end: str = "wav2vec2"  # "wav2vec2" (CNN + projection) or "upstream" (an audiorep encoder)
    wav2vec2: str | None = None  # local wav2vec2 folder; None = wav2vec2-base architecture at random init
    wav2vec2_config: dict[str, Any] = field(default_factory=dict)  # Wav2Vec2Config overrides for the random init
    upstream: str = "aalbert-base"  # audiorep.load name or folder, for front_end = "upstream"
    upstream_pretrained: bool = True  # False = random-weight architecture (labelled so in results)
    layer: int | None = None  # upstream hidden-state index; None = learned weighted sum of all (as in the probe)
    feature_cache: str | None = None  # folder for frozen front-end outputs, shared by runs; None = memory only
    laa: dict[str, Any] = field(default_factory=dict)  # LAAConfig overrides (hidden/input dims come from LM/front end)
    use_audio: bool = True  # False = text-only RoBERTa (the baseline), same code path otherwise
    # optimisation (defaults: the reimplementation's)
    seed: int = 0
    device: str = "cpu"
    num_threads: int | None = None  # torch CPU threads; 1 is fastest for small GRUs on a busy machine (no OMP spin)
    batch_size: int = 16
    lr: float = 2e-5
    head_lr: float | None = None  # rate for the regression head and LAA parts in fine-tuning; None = lr
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # cosine schedule with linear warm-up over this fraction of steps
    epochs: int = 5
    max_steps: int | None = None  # stop after this many steps (pretraining); None = epochs
    grad_clip: float = 1.0
    # pretraining
    mlm_prob: float = 0.15
    save_every: int = 200  # LAA checkpoint every N steps
    pretrain_parts: list[str] = field(default_factory=lambda: ["input_proj", "gru", "aggregation", "prefix_norm",
                                                               "front_end"])
    # fine-tuning
    laa_checkpoint: str | None = None  # LAA weights from pretraining; None = fine-tune from random LAA
    finetune_parts: list[str] = field(default_factory=lambda: ["lm", "aggregation", "prefix_norm", "head"])
    select_metric: str = "MAE"  # dev metric for the best checkpoint
    out_dir: str = "exp/teasel"  # checkpoints and results

    def __post_init__(self) -> None:
        if self.front_end not in ("wav2vec2", "upstream"):
            raise ConfigError(f"front_end must be 'wav2vec2' or 'upstream', got {self.front_end!r}")
        check_ranges(self, "", {
            "max_text_tokens": ints(1, 10**6, "tokens"),
            "max_audio_seconds": reals(0.0, 10**5, "seconds", low_open=True),
            "layer": ints(-10**4, 10**4, "(a hidden-state index; negative counts from the last)", optional=True), "seed": SEED,
            "num_threads": ints(1, 4096, "threads", optional=True), "batch_size": ints(1, 10**6, "utterances"),
            "lr": LR, "head_lr": LR._replace(optional=True), "weight_decay": WEIGHT_DECAY,
            "warmup_ratio": reals(0.0, 1.0, "(a fraction of the steps)", high_open=True),
            "epochs": ints(1, 10**6, "epochs"), "max_steps": ints(1, 10**12, "steps", optional=True),
            "grad_clip": GRAD_CLIP, "mlm_prob": reals(0.0, 1.0, "(a probability)", low_open=True),
            "save_every": ints(1, 10**12, "steps"),
        })
        check_select_metric(self.select_metric, "select_metric")

    @property
    def text_model_folder(self) -> str | None:
        """The local LM folder, or None for the cached small LM (what :func:`~audiorep.multimodal.lm.ensure_lm` takes)."""
        return None if self.text_model == "teasel-small" else self.text_model

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_run_config(path: str | None = None, overrides: Sequence[str] = ()) -> TeaselRunConfig:
    """YAML file + ``key=value`` overrides (``small_lm.epochs=3`` nests) -> TeaselRunConfig (the shared loader)."""
    return load(TeaselRunConfig, path, overrides)
