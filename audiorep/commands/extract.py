"""``audiorep extract MODEL AUDIO... --out FILE``: hidden states of audio files, saved as safetensors."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="extract hidden states of audio files",
                       description="Run an upstream over audio files and save one tensor per file "
                                   "(frames x hidden) into a safetensors file keyed by the file path.")
    p.add_argument("model", help="registered name, model folder or s3prl checkpoint")
    p.add_argument("audio", nargs="+", type=Path, help="audio files (any rate; resampled to the model's)")
    p.add_argument("--out", type=Path, required=True,
                   help="output .safetensors file (an existing one is replaced only with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an --out file that audiorep extract wrote")
    p.add_argument("--layer", type=int, default=None,
                   help="hidden state index (0 = input embedding, -1 = last); default: all layers stacked")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (for testing a pipeline)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from .. import load, read_audio
    from ..errors import AudioError, ConfigError
    from ..fileio import atomic_write_bytes
    from ._checks import check_device, check_output_file

    # every argument is checked before the model loads and the first file is read
    check_device(args.device)
    _check_out(args.out, args.overwrite)
    check_output_file(args.out)
    for path in args.audio:
        if path.is_dir():
            raise AudioError(f"{path}: a folder, not an audio file")
        if not path.is_file():
            raise AudioError(f"{path}: no such audio file")
    model = load(args.model, pretrained=not args.no_pretrained, device=args.device)
    n_states = model.num_layers + 1
    if args.layer is not None and not -n_states <= args.layer < n_states:
        raise ConfigError(f"--layer {args.layer}: the model has hidden states 0..{n_states - 1}")
    out: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for path in tqdm(args.audio, desc="extract", unit="file"):
            wav, _ = read_audio(path, model.sample_rate)
            hs = model([wav]).hidden_states
            t = hs[args.layer][0] if args.layer is not None else torch.stack([h[0] for h in hs])  # (T, H) / (L+1, T, H)
            out[str(path)] = t.float().cpu().contiguous()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save

    meta = {"format": EXTRACT_FORMAT, "model": str(args.model), "layer": str(args.layer)}
    atomic_write_bytes(args.out, save(out, metadata=meta))
    print(args.out)
    return 0


EXTRACT_FORMAT = "audiorep-extract"


def _check_out(out: Path, overwrite: bool) -> None:
    """An existing --out is replaced only with --overwrite, and only if audiorep extract wrote it."""
    from ..errors import ConfigError

    if not out.is_file():
        return
    if not overwrite:
        raise ConfigError(f"--out {out}: already exists; pass --overwrite to replace it, or choose another file")
    try:
        from safetensors import safe_open

        with safe_open(str(out), "pt") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 - any unreadable file is simply not ours
        meta = {}
    if meta.get("format") != EXTRACT_FORMAT and not {"model", "layer"} <= set(meta):
        raise ConfigError(f"--out {out}: not a file audiorep extract wrote; refusing to replace it even with "
                          "--overwrite")
