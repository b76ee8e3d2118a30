"""``audiorep export MODEL --to onnx|torch OUT``: a native encoder as an ONNX file or a torch.export program."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export an encoder to ONNX or torch.export (dynamic batch and length)",
                       description="Write a Mockingjay/AALBERT/TERA encoder as one file that runs without audiorep: "
                                   "waveforms + lengths in (the log-mel front end inside the graph), the chosen "
                                   "hidden states + frame lengths out. ONNX needs `pip install audiorep[onnx]`.")
    p.add_argument("model", help="registered name, model folder or s3prl checkpoint")
    p.add_argument("out", type=Path, help="file to write (.onnx for --to onnx, .pt2 for --to torch)")
    p.add_argument("--to", choices=("onnx", "torch"), default="onnx",
                   help="onnx (default; run with onnxruntime) or torch (torch.export program, torch.export.load)")
    p.add_argument("--layers", default="all",
                   help="hidden states to output: all (default), last, or comma-separated indices (0 = input "
                        "embedding)")
    p.add_argument("--front-end", choices=("graph", "features"), default="graph",
                   help="graph (default): waveforms in; features: log-mel frames in (settings in the metadata)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.add_argument("--quantize", choices=("int8",), default=None,
                   help="ONNX only: dynamic int8 weights for the encoder's matrix products (onnxruntime)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT file")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (for testing a pipeline)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..weights import export as ex

    layers = args.layers if args.layers in ("all", "last") else [s.strip() for s in args.layers.split(",")]
    if args.to == "torch" and (args.quantize or args.opset is not None):
        raise ConfigError("--quantize and --opset apply to --to onnx only")
    if args.out.is_dir():
        raise ConfigError(f"{args.out}: is a folder; give the file to write (e.g. {args.out / 'model.onnx'})")
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"{args.out}: already exists; pass --overwrite to replace it, or choose another file")
    if str(args.model).startswith(("hf:", "torchaudio:")):
        raise ConfigError(f"{args.model}: export covers audiorep's native encoders (mockingjay, aalbert, tera); for "
                          "transformers/torchaudio encoders use `optimum-cli export onnx` or torch.onnx.export on "
                          "the original model")
    if args.to == "onnx":
        if args.opset is not None and args.opset < ex.MIN_ONNX_OPSET:  # an argument error, before any dependency's
            raise ConfigError(f"--opset {args.opset}: cannot express this graph (front end and encoder need opset "
                              f"{ex.MIN_ONNX_OPSET} or newer)")
        _need_onnx()
    from ..weights.loading import load

    model = load(args.model, pretrained=not args.no_pretrained)
    if args.to == "onnx":
        out = ex.export_onnx(model, args.out, layers, opset=args.opset or ex.DEFAULT_ONNX_OPSET,
                             overwrite=args.overwrite, quantize=args.quantize, front_end=args.front_end,
                             source=str(args.model))
    else:
        out = ex.export_program(model, args.out, layers, overwrite=args.overwrite, front_end=args.front_end,
                                source=str(args.model))
    print(out)
    return 0


def _need_onnx() -> None:
    from ..errors import ConfigError

    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"--to onnx needs {exc.name}: pip install 'audiorep[onnx]'") from None
