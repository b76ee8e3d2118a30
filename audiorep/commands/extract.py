"""``audiorep extract MODEL AUDIO... --out FILE``: hidden states of audio files, saved as safetensors.

Files are sorted by duration and run in batches of similar length (little padding); each batch's
features go to disk as soon as they are computed (:class:`audiorep.tensorfile.StreamingSafetensorsWriter`),
so memory holds one batch, however long the input list. The output is one safetensors file keyed by the
input paths exactly as typed on the command line (``./b.flac`` and ``b.flac`` are different keys).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXTRACT_FORMAT = "audiorep-extract"
DEFAULT_BATCH_SECONDS = 60.0  # padded audio per batch: ~75 MB of mockingjay-base features, all layers; on CPU
# a 60 s batch (6,000 frames) already fills the GEMMs, so bigger batches buy memory, not speed


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="extract hidden states of audio files",
                       description="Run an upstream over audio files and save one tensor per file "
                                   "(frames x hidden, or layers x frames x hidden) into a safetensors file. The "
                                   "key of each tensor is the audio path exactly as given on the command line "
                                   "(./b.flac stays ./b.flac); a file named __metadata__ (a key safetensors "
                                   "reserves) must be given as ./__metadata__. Files run in batches of similar "
                                   "duration and each batch is written as soon as it is computed: memory holds "
                                   "one batch.")
    p.add_argument("model", help="registered name, model folder or s3prl checkpoint")
    p.add_argument("audio", nargs="+",
                   help="audio files (any rate; resampled to the model's); each one's key in the output is the path "
                        "as given")
    p.add_argument("--out", type=Path, required=True,
                   help="output .safetensors file (an existing one is replaced only with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an --out file that audiorep extract wrote")
    p.add_argument("--layer", type=int, default=None,
                   help="hidden state index (0 = input embedding, -1 = last); default: all layers stacked")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS,
                   help="padded audio seconds per batch (a longer file runs alone); bounds memory "
                        f"(default {DEFAULT_BATCH_SECONDS:g})")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="a file that cannot be read: stop (raise, the default) or leave it out and list it at "
                        "the end (skip)")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="encoder arithmetic: fp32 (default), bf16 (faster on CPUs with bf16 GEMMs, ~1e-2 absolute "
                        "error) or int8 (CPU: dynamic int8 linears in the transformer layers; docs/deploy.md has "
                        "speed and error); mockingjay/aalbert/tera encoders; features are saved as fp32")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (for testing a pipeline)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from .. import load, read_audio
    from ..errors import AudioError, ConfigError
    from ..tensorfile import StreamingSafetensorsWriter
    from ._checks import check_device, check_output_file

    # every argument is checked before the model loads and the first file is read
    check_device(args.device)
    if not args.batch_seconds > 0:
        raise ConfigError(f"--batch-seconds {args.batch_seconds}: must be positive")
    _check_out(args.out, args.overwrite)
    check_output_file(args.out)
    from ..fileio import remove_dead_temps
    from ..tensorfile import RESERVED

    remove_dead_temps(args.out)  # leftovers of an extract into this --out that was killed mid-write
    if RESERVED in args.audio:
        raise ConfigError(f"audio file {RESERVED}: safetensors reserves that key for the file's metadata; "
                          f"give the file as ./{RESERVED} (the key is the path as given)")
    skipped: list[str] = []  # one line per file left out under --on-error skip

    def bad(message: str) -> None:
        if args.on_error == "raise":
            raise AudioError(message)
        skipped.append(message)

    # each file is known by the path as typed (its key in the output; Path("./b") would drop the "./");
    # a path given twice is extracted once
    paths = list(dict.fromkeys(args.audio))
    durations = {}
    for key in paths:
        path = Path(key)
        if path.is_dir():
            bad(f"{path}: a folder, not an audio file")
        elif not path.is_file():
            bad(f"{path}: no such audio file")
        else:
            durations[key] = _duration(path, bad)
    durations = {p: d for p, d in durations.items() if d is not None}
    model = load(args.model, pretrained=not args.no_pretrained, device=args.device)
    if args.precision == "bf16":
        _to_bf16(model, args.model)
    elif args.precision == "int8":
        from ..weights.export import quantize_int8

        quantize_int8(model, f"--precision int8: {args.model}")
    n_states = model.num_layers + 1
    if args.layer is not None and not -n_states <= args.layer < n_states:
        raise ConfigError(f"--layer {args.layer}: the model has hidden states 0..{n_states - 1}")
    meta = {"format": EXTRACT_FORMAT, "model": str(args.model), "layer": str(args.layer), "precision": args.precision}
    written = 0
    with StreamingSafetensorsWriter(args.out, list(durations), meta) as writer, \
            torch.inference_mode(), tqdm(total=len(durations), desc="extract", unit="file") as bar:
        for batch in length_batches(durations, args.batch_seconds):
            wavs, names = [], []
            for key in batch:
                try:
                    wavs.append(read_audio(Path(key), model.sample_rate)[0])  # (S,)
                    names.append(key)
                except AudioError as exc:
                    bad(str(exc))
            if wavs:
                out = model(wavs)
                for i, (name, n) in enumerate(zip(names, out.lengths.tolist())):
                    if args.layer is not None:
                        t = out.hidden_states[args.layer][i, :n]  # (T, H)
                    else:
                        t = torch.stack([h[i, :n] for h in out.hidden_states])  # (L+1, T, H)
                    writer.add(name, t.float())
                written += len(names)
                del out, wavs
            bar.update(len(batch))
        if written == 0:
            raise AudioError(f"no input file could be read ({len(skipped)} skipped); nothing written to {args.out}")
        writer.metadata["skipped"] = str(len(skipped))
        writer.close()
    if skipped:
        print(f"skipped {len(skipped)} of {len(paths)} file(s) (--on-error skip):", file=sys.stderr)
        for line in skipped:
            print(f"  {line}", file=sys.stderr)
    print(args.out)
    return 0


def _to_bf16(model, name: str) -> None:
    """Cast the encoder to bf16 for ``--precision bf16``, or say in one line why it cannot be."""
    import torch

    from ..errors import ConfigError
    from ..kernels.fused import CPU_BF16

    if not hasattr(model, "reduced_precision"):
        raise ConfigError(f"--precision bf16: {name} ({type(model).__name__}) runs in fp32 only; bf16 extraction "
                          "covers the mockingjay/aalbert/tera encoders")
    device = next(model.parameters()).device
    if device.type == "cpu" and not CPU_BF16:
        raise ConfigError("--precision bf16: this CPU has no bf16 GEMMs (oneDNN reports none); it would run slower "
                          "than fp32, so use --precision fp32")
    model.reduced_precision(torch.bfloat16)


def _duration(path: Path, bad) -> float | None:
    """Seconds of audio in ``path`` from its header (no samples read), or None after ``bad`` for an unreadable file."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:  # noqa: BLE001 - soundfile raises RuntimeError/LibsndfileError/TypeError by format
        bad(f"{path}: cannot read audio ({type(exc).__name__}: {exc})")
        return None
    return info.frames / info.samplerate if info.samplerate > 0 and info.frames > 0 else 0.0


def length_batches(durations: dict, batch_seconds: float) -> list[list]:
    """Group keys of ``durations`` (seconds) longest first into batches whose padded length
    (files x longest) stays within ``batch_seconds``; a file longer than that runs alone.

    Longest first: the biggest batch comes first, so a run that does not fit in memory fails at once.
    """
    batches: list[list] = []
    for key in sorted(durations, key=lambda k: -durations[k]):
        if batches and (len(batches[-1]) + 1) * durations[batches[-1][0]] <= batch_seconds:
            batches[-1].append(key)
        else:
            batches.append([key])
    return batches


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
