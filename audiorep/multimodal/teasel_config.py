"""Run configuration for TEASEL's LM building, LAA pretraining and fine-tuning (one dataclass, YAML-loadable)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .metrics import check_select_metric
from ..errors import ConfigError
from ..config import build


@dataclass
class SmallLMConfig:
    """The offline default LM: a small RoBERTa + byte-level BPE trained on the corpus transcripts."""

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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TeaselRunConfig:
    """Everything a TEASEL pretraining or fine-tuning run needs; fields unused by a stage are ignored."""

    # data
    corpus: str = "synth"  # get_corpus name or folder of split manifests with `text` and labels[label_key]
    train_split: str = "train"
    dev_split: str = "dev"
    test_split: str = "test"
    label_key: str = "sentiment"  # manifest labels key of the regression target
    metrics: str = "mosi"  # metric family: "mosi" ([-3, 3]) or "sims" ([-1, 1])
    max_text_tokens: int = 75  # the reimplementation's cap (incl. <s> and </s>)
    max_audio_seconds: float = 30.0  # the reimplementation's cap; longer audio is cut
    # language model
    lm: str | None = None  # local RoBERTa folder (roberta-base); None = the cached small LM (trained if missing)
    small_lm: SmallLMConfig = field(default_factory=SmallLMConfig)
    # speech front end
    front_end: str = "wav2vec2"  # "wav2vec2" (CNN + projection) or "upstream" (an audiorep encoder)
    wav2vec2: str | None = None  # local wav2vec2 folder; None = wav2vec2-base architecture at random init
    wav2vec2_config: dict[str, Any] = field(default_factory=dict)  # Wav2Vec2Config overrides for the random init
    upstream: str = "aalbert-base"  # audiorep.load name or folder, for front_end = "upstream"
    upstream_pretrained: bool = True  # False = random-weight architecture (labelled so in results)
    upstream_layer: int | None = None  # hidden-state index; None = learned weighted sum of all
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
    output_dir: str = "exp/teasel"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> "TeaselRunConfig":
        d = dict(d or {})
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"{where}: unknown TEASEL field(s) {sorted(unknown)}")
        # the project's typed builder: nested small_lm, "1e-3" read by YAML 1.1 as a string, wrong types named
        cfg = build(cls, d, where)
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "config") -> None:
        if self.front_end not in ("wav2vec2", "upstream"):
            raise ConfigError(f"{where}: front_end must be 'wav2vec2' or 'upstream', got {self.front_end!r}")
        for name in ("batch_size", "epochs", "max_text_tokens", "save_every"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{where}: {name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"{where}: warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        check_select_metric(self.select_metric, f"{where}: select_metric")


def load_run_config(path: str | None = None, overrides: list[str] | None = None) -> TeaselRunConfig:
    """YAML file (optional) + ``key=value`` overrides (values parsed as YAML; ``small_lm.epochs=3`` nests)."""
    import yaml

    data: dict[str, Any] = {}
    where = "config"
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
        where = str(p)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, value = item.split("=", 1)
        target = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override {item!r}: {part} is not a mapping")
        target[leaf] = yaml.safe_load(value)
    return TeaselRunConfig.from_dict(data, where)
