"""The model card (README.md) that ``save_pretrained`` writes beside config.json and model.safetensors.

Rendered from what the folder holds (architecture, feature settings, parameter count), what the caller
passes (training data and steps) and what it finds beside the folder (a pretraining run's ``eval.json``,
probe ``results.json``). A README.md the user wrote is never replaced: ``save_pretrained`` rewrites a card only
while the folder's ownership marker lists it (:mod:`audiorep.ownership`) and it still starts with
:data:`CARD_MARK`, so a card the user edited and took the mark off stays theirs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD_NAME = "README.md"
CARD_MARK = "<!-- audiorep model card: written by save_pretrained; edit freely, then delete this line to keep it -->"



def still_generated(path: Path) -> bool:
    """Whether the card at ``path`` still starts with :data:`CARD_MARK` (nobody took the mark off)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().rstrip("\n") == CARD_MARK
    except (OSError, UnicodeDecodeError):
        return False


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def found_results(directory: Path) -> dict[str, dict]:
    """Results lying beside a model folder: the run's held-out eval (``eval.json``) and probe results."""
    found = {}
    for parent in (directory, directory.parent):
        ev = _read_json(parent / "eval.json")
        if ev is not None and "eval" not in found:
            found["eval"] = ev
        for res in sorted(parent.glob("*/results.json"))[:20]:
            data = _read_json(res)
            if data is not None:
                found[f"probe: {res.parent.name}"] = data
    return found


def _scalars(d: dict, limit: int = 12) -> list[tuple[str, Any]]:
    """The first ``limit`` number/string entries of a result dict, flattened one level."""
    out = []
    for k, v in d.items():
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float, str)) and len(str(v)) <= 80:
            out.append((k, v))
        elif isinstance(v, dict):
            out += [(f"{k}.{k2}", v2) for k2, v2 in v.items()
                    if isinstance(v2, (int, float)) and not isinstance(v2, bool)]
        if len(out) >= limit:
            break
    return out[:limit]


def render_card(architecture: str, model_config: dict, feature_config: dict, num_parameters: int,
                training: dict | None = None, results: dict[str, dict] | None = None,
                repo_id: str | None = None) -> str:
    """The card's Markdown text, first line :data:`CARD_MARK`."""
    mc, fc = model_config, feature_config
    family = ("AALBERT (one shared layer)" if mc.get("share_layers") else "Mockingjay/TERA") \
        if architecture == "mockingjay" else architecture
    hub = f"hf-hub:{repo_id}" if repo_id else "hf-hub:ORG/NAME"
    # no YAML front matter: the hub reads it only at the very top, where the mark must be
    lines = [CARD_MARK, "", f"# {repo_id or 'audiorep encoder'}", "",
             f"A{'n' if family[0] in 'AEIOU' else ''} {family} speech encoder saved by audiorep: {mc.get('num_layers')} layer(s) of width "
             f"{mc.get('hidden_size')}, {mc.get('num_heads')} heads, FFN {mc.get('intermediate_size')}, "
             f"{num_parameters:,} parameters."
             + (f" Factorised input embedding of size {mc['embedding_size']}." if mc.get("embedding_size") else "")
             + (" Learned distance bias in attention." if mc.get("distance_bias") else ""), "",
             "## Features (the front end these weights expect)", "",
             f"{fc.get('kind')} features, {fc.get('n_mels') if fc.get('kind') == 'mel' else fc.get('n_freq')} bins, "
             f"{fc.get('sample_rate')} Hz input, {fc.get('win_ms')} ms Hann window, {fc.get('hop_ms')} ms hop, "
             f"n_fft {2 * (fc.get('n_freq', 201) - 1)}, level {fc.get('target_db')} dB, log offset {fc.get('log_eps')}, "
             f"per-utterance CMVN {'on' if fc.get('cmvn') else 'off'}. `config.json` holds them exactly; "
             "`audiorep.load` applies them for you.", ""]
    if training:
        lines += ["## Training", ""] + [f"- {k}: {v}" for k, v in training.items()] + [""]
    for name, data in (results or {}).items():
        rows = _scalars(data)
        if rows:
            lines += [f"## Results: {name}", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in rows] + [""]
    lines += ["## How to use", "", "```python", "import audiorep", f'model = audiorep.load("{hub}")',
              "out = model(wavs, wav_lens)   # wavs (B, S) at %s Hz; out.hidden_states: %s x (B, T, H)"
              % (fc.get("sample_rate"), mc.get("num_layers", 0) + 1), "```", "",
              "- s3prl: `audiorep convert MODEL --to s3prl states.ckpt`, then s3prl's `mockingjay_local` / "
              "`tera_local` upstream (architectures without a factorised embedding or distance bias).",
              "- ONNX: `audiorep export MODEL --to onnx model.onnx` (waveforms + lengths in, hidden states out; "
              "`--quantize int8` for CPU); torch.export: `--to torch model.pt2`.", ""]
    return "\n".join(lines)
