"""s3prl Mockingjay / TERA / AALBERT checkpoints: import (safely) into audiorep models, and export back.

Facts of the format (s3prl 0.4.x, upstream/mockingjay): a torch.save dict with ``Transformer`` (encoder state
dict), ``SpecHead`` (prediction head), the upstream config under ``Upstream_Config`` (or ``Config`` in older
files) with ``transformer``/``task``/``audio`` sections, plus optimiser state and argparse ``Args``.
Old files name LayerNorm parameters ``gamma``/``beta``. Shared-layer (AALBERT) files repeat the one layer's
tensors under every layer index.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError
from ..features import FeatureConfig
from ..models.base import check_finite_weights
from ..models.mockingjay import MockingjayConfig, MockingjayModel, SpecPredictionHead
from ..safe_pickle import safe_torch_load

# our layer-local name -> s3prl's, relative to encoder.layer.{i}
_LAYER_MAP = {
    "attn.out": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "ffn_norm": "output.LayerNorm",
}
_HEAD_MAP = {"dense": "dense", "norm": "LayerNorm", "out": "output"}


def is_s3prl_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and "Transformer" in obj and ("Upstream_Config" in obj or "Config" in obj)


def tensor_section(states: dict[str, Any], key: str, source: str) -> dict[str, torch.Tensor] | None:
    """``states[key]`` as a dict of name -> tensor (None when absent); CheckpointError naming what is off."""
    obj = states.get(key)
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: '{key}' must be a dict of tensors, got {type(obj).__name__}")
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: '{key}' holds {type(value).__name__} {_short(value)} at {name!r} "
                                  "where a tensor belongs")
    check_finite_weights(obj, f"{source}: '{key}'")
    return obj


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _section(parent: dict[str, Any], key: str, where: str, source: str) -> dict[str, Any]:
    value = parent.get(key, {})
    if not isinstance(value, dict):
        raise CheckpointError(f"{source}: {where}{key} must be a mapping, got {type(value).__name__} {_short(value)}")
    return value


def upstream_config(states: dict[str, Any], source: str) -> dict[str, Any]:
    """The section holding ``transformer``/``audio``: ``Config`` in legacy files, ``Upstream_Config`` later."""
    for key in ("Config", "Upstream_Config"):
        section = states.get(key)
        if isinstance(section, dict) and "transformer" in section:
            return section
    raise CheckpointError(f"{source}: no upstream config (expected Upstream_Config or Config with 'transformer')")


def _rename_legacy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """gamma/beta -> weight/bias (pre-2019 LayerNorm names)."""
    out = {}
    for k, v in state.items():
        parts = k.split(".")
        if parts[-1] == "gamma":
            parts[-1] = "weight"
        elif parts[-1] == "beta":
            parts[-1] = "bias"
        out[".".join(parts)] = v
    return out


def convert_config(cfg: dict[str, Any], state: dict[str, torch.Tensor], head_state: dict[str, torch.Tensor] | None,
                   source: str) -> tuple[MockingjayConfig, FeatureConfig]:
    """s3prl's transformer + audio sections -> (MockingjayConfig, FeatureConfig), refusing what we can't reproduce."""
    t = _section(cfg, "transformer", "upstream config ", source)
    audio = cfg.get("audio")
    if not isinstance(audio, dict):
        raise CheckpointError(f"{source}: no 'audio' section: this checkpoint expects pre-extracted features, "
                              "audiorep needs an on-the-fly feature config")
    if "kaldi" in audio:
        raise CheckpointError(f"{source}: kaldi-fbank front ends are not supported (only s3prl's torchaudio one)")
    if str(t.get("hidden_act", "gelu")) != "gelu":
        raise CheckpointError(f"{source}: hidden_act {t.get('hidden_act')!r} unsupported (Mockingjay uses gelu)")
    if bool(t.get("pre_layer_norm", False)):
        raise CheckpointError(f"{source}: pre-LayerNorm transformers are not supported (published models are post-LN)")
    inp = _section(audio, "input", "audio.", source)
    if int(inp.get("delta", 0)) != 0:
        raise CheckpointError(f"{source}: delta features are not supported by audiorep's front end")
    kind = inp.get("feat_type", "mel")
    if kind not in ("mel", "linear"):
        raise CheckpointError(f"{source}: input feature type {kind!r} unsupported (mel or linear)")
    feats = FeatureConfig(
        sample_rate=int(audio.get("sample_rate", 16000)),
        kind=kind,
        n_mels=int(audio.get("n_mels", 80)),
        win_ms=float(audio.get("win_ms", 25)),
        hop_ms=float(audio.get("hop_ms", 10)),
        n_freq=int(audio.get("n_freq", 201)),
        target_db=float(audio["target_level"]) if audio.get("target_level") is not None else None,
        log=bool(inp.get("log", False)),
        cmvn=bool(inp.get("cmvn", False)),
    )
    w = state.get("input_representations.spec_transform.weight")
    if w is None:
        raise CheckpointError(f"{source}: 'Transformer' has no input_representations.spec_transform.weight")
    if w.dim() != 2:
        raise CheckpointError(f"{source}: 'Transformer' input_representations.spec_transform.weight must be a "
                              f"(hidden, input) matrix, got shape {tuple(w.shape)}")
    input_dim = int(w.shape[1])
    if input_dim != feats.dim:
        raise CheckpointError(f"{source}: encoder input size {input_dim} does not match its audio config "
                              f"({feats.kind}, {feats.dim} dims)")
    out_w = (head_state or {}).get("output.weight")
    if out_w is not None and out_w.dim() != 2:
        raise CheckpointError(f"{source}: 'SpecHead' output.weight must be a matrix, got shape {tuple(out_w.shape)}")
    model = MockingjayConfig(
        input_dim=input_dim,
        hidden_size=int(t["hidden_size"]),
        num_layers=int(t["num_hidden_layers"]),
        num_heads=int(t["num_attention_heads"]),
        intermediate_size=int(t["intermediate_size"]),
        dropout=float(t.get("hidden_dropout_prob", 0.1)),
        attn_dropout=float(t.get("attention_probs_dropout_prob", 0.1)),
        layer_norm_eps=float(t.get("layer_norm_eps", 1e-12)),
        share_layers=bool(t.get("share_layer", False)),
        output_dim=int(out_w.shape[0]) if out_w is not None and int(out_w.shape[0]) != input_dim else None,
        initializer_range=float(t.get("initializer_range", 0.02)),
    )
    return model, feats


def convert_state(state: dict[str, torch.Tensor], config: MockingjayConfig, source: str) -> dict[str, torch.Tensor]:
    """s3prl ``Transformer`` state dict -> MockingjayModel state dict (QKV fused; shared layer taken once)."""
    state = _rename_legacy(state)
    out = {
        "input_proj.weight": state["input_representations.spec_transform.weight"],
        "input_proj.bias": state["input_representations.spec_transform.bias"],
        "input_norm.weight": state["input_representations.LayerNorm.weight"],
        "input_norm.bias": state["input_representations.LayerNorm.bias"],
    }
    n_distinct = 1 if config.share_layers else config.num_layers
    H = config.hidden_size
    try:
        for i in range(n_distinct):
            src = f"encoder.layer.{i}."
            for p in ("weight", "bias"):
                parts = [state[f"{src}attention.self.{n}.{p}"] for n in ("query", "key", "value")]
                want = (H, H) if p == "weight" else (H,)
                for n, t in zip(("query", "key", "value"), parts):
                    if tuple(t.shape) != want:  # torch.cat would fail (or fuse nonsense) without naming it
                        raise CheckpointError(f"{source}: 'Transformer' {src}attention.self.{n}.{p} has shape "
                                              f"{tuple(t.shape)}, expected {want} for hidden_size {H}")
                out[f"layers.{i}.attn.qkv.{p}"] = torch.cat(parts, dim=0)
                for ours, theirs in _LAYER_MAP.items():
                    out[f"layers.{i}.{ours}.{p}"] = state[f"{src}{theirs}.{p}"]
    except KeyError as exc:
        raise CheckpointError(f"{source}: 'Transformer' lacks {exc.args[0]} for a {config.num_layers}-layer "
                              f"{'shared' if config.share_layers else 'unshared'} encoder") from None
    if config.share_layers:
        # The file repeats the shared layer per index; a file whose copies differ was not trained shared.
        for i in range(1, config.num_layers):
            k = f"encoder.layer.{i}.output.dense.weight"
            if k in state and not torch.equal(state[k], state["encoder.layer.0.output.dense.weight"]):
                raise CheckpointError(f"{source}: share_layer is set but layer {i} differs from layer 0")
    elif f"encoder.layer.{config.num_layers}.output.dense.weight" in state:
        raise CheckpointError(f"{source}: 'Transformer' has more layers than num_hidden_layers={config.num_layers}")
    return {k: v.float() for k, v in out.items()}


def convert_head(head_state: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """s3prl ``SpecHead`` state dict -> SpecPredictionHead state dict."""
    head_state = _rename_legacy(head_state)
    missing = [f"{theirs}.{p}" for theirs in _HEAD_MAP.values() for p in ("weight", "bias")
               if f"{theirs}.{p}" not in head_state]
    if missing:
        raise CheckpointError(f"{source}: 'SpecHead' lacks {', '.join(missing)}")
    return {f"{ours}.{p}": head_state[f"{theirs}.{p}"].float()
            for ours, theirs in _HEAD_MAP.items() for p in ("weight", "bias")}


def load_s3prl_checkpoint(path: str | os.PathLike, with_head: bool = False
                          ) -> MockingjayModel | tuple[MockingjayModel, SpecPredictionHead | None]:
    """Build an audiorep model from an s3prl Mockingjay/TERA/AALBERT ``states-*.ckpt`` without running pickled code."""
    from ..models.base import check_state_fits, declared_shapes, load_state_strict

    path = os.fspath(path)
    states = safe_torch_load(path)
    if not is_s3prl_checkpoint(states):
        keys = sorted(states)[:8] if isinstance(states, dict) else type(states).__name__
        raise CheckpointError(f"{path}: not an s3prl Mockingjay/TERA/AALBERT checkpoint (top-level keys: {keys})")
    cfg = upstream_config(states, path)
    state = _rename_legacy(tensor_section(states, "Transformer", path) or {})
    head_state = tensor_section(states, "SpecHead", path)
    head_state = _rename_legacy(head_state) if head_state is not None else None
    try:
        mcfg, fcfg = convert_config(cfg, state, head_state, path)
    except CheckpointError:
        raise
    except ConfigError as exc:  # a field out of range or of the wrong type (audiorep.validate)
        raise CheckpointError(f"{path}: upstream config: {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: malformed upstream config ({type(exc).__name__}: {exc})") from exc
    encoder_state = convert_state(state, mcfg, path)
    head_converted = convert_head(head_state, path) if with_head and head_state is not None else None
    # the sizes the upstream config declares, against the tensors the file holds, before allocating the model
    check_state_fits(declared_shapes(lambda: MockingjayModel(mcfg, fcfg)), _shapes(encoder_state), path)
    if head_converted is not None:
        check_state_fits(declared_shapes(lambda: SpecPredictionHead(mcfg)), _shapes(head_converted),
                         f"{path} (SpecHead)")
    model = MockingjayModel(mcfg, fcfg)
    load_state_strict(model, encoder_state, path)
    if not with_head:
        return model
    head = None
    if head_converted is not None:
        head = SpecPredictionHead(mcfg)
        load_state_strict(head, head_converted, f"{path} (SpecHead)")
    return model, head


def export_s3prl_checkpoint(model: MockingjayModel, path: str | os.PathLike, head: SpecPredictionHead | None = None,
                            step: int = 0, task: dict[str, Any] | None = None) -> None:
    """Write ``model`` (and its head) in s3prl's checkpoint layout, loadable by s3prl's ``mockingjay_local``."""
    from ..fileio import atomic_write_bytes
    import io

    c, f = model.config, model.feature_config
    if c.embedding_size:
        raise ConfigError("s3prl has no factorized input projection; a model with embedding_size cannot be exported")
    if c.distance_bias:
        raise ConfigError("s3prl has no attention distance bias; a model with distance_bias cannot be exported")
    sd = model.state_dict()
    enc: dict[str, torch.Tensor] = {
        "input_representations.spec_transform.weight": sd["input_proj.weight"],
        "input_representations.spec_transform.bias": sd["input_proj.bias"],
        "input_representations.LayerNorm.weight": sd["input_norm.weight"],
        "input_representations.LayerNorm.bias": sd["input_norm.bias"],
    }
    for i in range(c.num_layers):
        j = 0 if c.share_layers else i
        dst = f"encoder.layer.{i}."
        for p in ("weight", "bias"):
            q, k, v = sd[f"layers.{j}.attn.qkv.{p}"].chunk(3, dim=0)
            for name, t in (("query", q), ("key", k), ("value", v)):
                enc[f"{dst}attention.self.{name}.{p}"] = t.clone()
            for ours, theirs in _LAYER_MAP.items():
                enc[f"{dst}{theirs}.{p}"] = sd[f"layers.{j}.{ours}.{p}"].clone()
    feat_entry = {"feat_type": f.kind, "channel": 0, "log": f.log, "delta": 0, "cmvn": f.cmvn}
    if c.target_dim == f.dim:
        target_kind = f.kind
    elif c.target_dim == f.n_freq:
        target_kind = "linear"  # Mockingjay-large: log-mel in, linear spectrum out
    else:
        raise ConfigError(f"head output size {c.target_dim} is neither the input features' nor a linear spectrum's")
    upstream = {
        "transformer": {
            "input_dim": c.input_dim, "hidden_size": c.hidden_size, "num_hidden_layers": c.num_layers,
            "num_attention_heads": c.num_heads, "intermediate_size": c.intermediate_size, "hidden_act": "gelu",
            "hidden_dropout_prob": c.dropout, "attention_probs_dropout_prob": c.attn_dropout,
            "initializer_range": c.initializer_range, "layer_norm_eps": c.layer_norm_eps,
            "share_layer": c.share_layers, "pre_layer_norm": False,
        },
        "task": {"sequence_length": 1500, **(task or {})},
        "audio": {
            "target_level": f.target_db, "win_ms": f.win_ms, "hop_ms": f.hop_ms, "n_freq": f.n_freq,
            "n_mels": f.n_mels, "n_mfcc": 13, "input": feat_entry,
            "target": {**feat_entry, "feat_type": target_kind},
        },
    }
    states = {
        "Transformer": {k: v.detach().cpu().contiguous() for k, v in enc.items()},
        "Upstream_Config": upstream,
        "Config": {"exported_by": "audiorep"},  # s3prl reads Config first; must not hold 'transformer'
        "Step": int(step),
    }
    if head is not None:
        hs = head.state_dict()
        states["SpecHead"] = {f"{theirs}.{p}": hs[f"{ours}.{p}"].detach().cpu()
                              for ours, theirs in _HEAD_MAP.items() for p in ("weight", "bias")}
    buf = io.BytesIO()
    torch.save(states, buf)
    atomic_write_bytes(path, buf.getvalue())
