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
    p.add_argument("--out", type=Path, required=True, help="output .safetensors file")
    p.add_argument("--layer", type=int, default=None,
                   help="hidden state index (0 = input embedding, -1 = last); default: all layers stacked")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (for testing a pipeline)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from .. import load, read_audio
    from ..errors import ConfigError
    from ..fileio import atomic_write_bytes

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

    atomic_write_bytes(args.out, save(out, metadata={"model": str(args.model), "layer": str(args.layer)}))
    print(args.out)
    return 0
