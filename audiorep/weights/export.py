"""Export a native encoder (Mockingjay / AALBERT / TERA) to ONNX or a ``torch.export`` program.

Both graphs take the waveforms themselves, ``wavs`` (B, S) float at the model's rate, zero-padded, and
``wav_lens`` (B,) int64 samples, with batch and length dynamic; the log-mel front end (level
normalisation, per-utterance reflect padding, Hann-window STFT, power, mel matrix, log, CMVN over valid
frames) is part of the graph, so a padded batch gives each utterance its own features and hidden states.
In ONNX the STFT is a product with a DFT matrix (``features.dft_basis``): onnxruntime's STFT op differs
from an FFT by far more than float32 rounding on real speech. Framing, DFT, power and mel run in float64 and
are rounded to float32 once, before the log: in quiet mel bins the log amplifies any rounding of the spectrum,
so the graph then agrees with an exact spectrum instead of adding its own float32 error to eager's.
``front_end="features"`` instead exports the encoder alone (log-mel frames + frame lengths in); the file's
metadata then holds the front end's settings.
Outputs: the chosen hidden states (``hidden_state_<i>``, (B, T + 1, H), zero past each length: one
padding frame more than eager ``model(wavs, wav_lens)`` returns) and ``lengths`` (B,) valid frames.

What is traced is a copy of the model built with the plain PyTorch kernels (reference attention, unfused
linears, no packing: ``kernels.use_kernels``), and the model's ``traceable`` paths, which take the same
arithmetic as eager inference with no branch on the data. The weights are the model's own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..features import dft_basis
from ..layers.positional import SinusoidalPositions, sinusoid_table
from ..models.mockingjay import MockingjayModel

MIN_ONNX_OPSET = 18  # torch's ONNX exporter writes opset 18 and newer (LayerNormalization itself needs 17)
DEFAULT_ONNX_OPSET = 18
LAYER_CHOICES = "'all', 'last' or a hidden state index"


def check_exportable(model: nn.Module, source: str) -> MockingjayModel:
    """The model if it is a native encoder; otherwise a one-line ConfigError saying what to use instead."""
    if isinstance(model, MockingjayModel):
        return model
    raise ConfigError(
        f"{source}: a {type(model).__name__}; export covers audiorep's native encoders (mockingjay, aalbert, "
        "tera and folders or s3prl checkpoints of them). For transformers encoders (hf:...) use "
        "`optimum-cli export onnx` or torch.onnx.export on the transformers model itself")


def layer_indices(layers: str | int | Sequence[int], num_layers: int) -> list[int]:
    """Hidden-state indices (0 = input embedding) that ``layers`` selects: 'all', 'last', an index or a list."""
    n = num_layers + 1
    if layers == "all":
        return list(range(n))
    if layers == "last":
        return [n - 1]
    items = [layers] if isinstance(layers, (int, str)) else list(layers)
    out = []
    for item in items:
        try:
            i = int(item)
        except (TypeError, ValueError):
            raise ConfigError(f"layers {item!r}: expected {LAYER_CHOICES}") from None
        if not -n <= i < n:
            raise ConfigError(f"layers {i}: the model has hidden states 0..{n - 1}")
        out.append(i % n)
    if not out:
        raise ConfigError(f"layers: empty selection; expected {LAYER_CHOICES}")
    return out


FRONT_ENDS = ("graph", "features")


class ExportModule(nn.Module):
    """Waveforms + sample lengths (front end "graph") or features + frame lengths ("features") -> the selected
    hidden states + frame lengths, with no data-dependent branch."""

    def __init__(self, model: MockingjayModel, layers: list[int], front_end: str = "graph", dft: bool = False):
        super().__init__()
        self.model = model
        self.layers = layers
        self.front_end = front_end
        c = model.feature_config
        # ONNX: the spectrum as a DFT matrix product (onnxruntime's STFT op is far less accurate than an FFT),
        # in float64, so that the log of quiet bins sees no float32 rounding of the spectrum
        self.dft = dft_basis(model.features.window, c.n_fft, torch.float64) if dft else None
        if self.dft is not None and model.features.mel_fb is not None:
            # the mel matrix stored in the DFT's dtype, so the graph holds no cast of it
            model.features.mel_fb = model.features.mel_fb.to(self.dft.dtype)

    @property
    def input_names(self) -> list[str]:
        return ["wavs", "wav_lens"] if self.front_end == "graph" else ["feats", "lengths"]

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # One hop of zeros (or one frame) more: every batch then has at least 2 frames, so the traced graph is
        # not specialised to a 1-frame batch. The extra frame is padding: masked, zero in every output.
        if self.front_end == "graph":
            x = nn.functional.pad(x, (0, self.model.feature_config.hop_length))  # (B, S + hop)
            feats, lengths = self.model.features(x, lens, traceable=True, dft_basis=self.dft)  # (B, T + 1, D)
        else:
            feats, lengths = nn.functional.pad(x, (0, 0, 0, 1)), lens  # (B, T + 1, D)
        out = self.model.encode(feats, lengths, traceable=True)
        return (*(out.hidden_states[i] for i in self.layers), lengths)  # (B, T + 1, H) each, then (B,)


def plain_copy(model: MockingjayModel) -> MockingjayModel:
    """The same encoder and weights, built with the PyTorch reference kernels, fp32, in eval mode."""
    from ..kernels.config import use_kernels

    config = type(model.config).from_dict({**model.config.to_dict(), "attention_backend": "reference"})
    with use_kernels(attention="reference", layer_norm="torch", cpu_fusion=False, packed_training=False,
                     onednn_training=False):
        plain = type(model)(config, model.feature_config)
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    plain.load_state_dict(state, strict=True)
    plain.positions = ComputedPositions(model.hidden_size)  # a cached table would cap the exported length
    return plain.eval()


class ComputedPositions(SinusoidalPositions):
    """The sinusoid table computed inside the graph for each length (the same float64 arithmetic, then cast):
    an exported graph holds no table of a fixed size, so no input length is out of its range."""

    def forward(self, length) -> torch.Tensor:
        return sinusoid_table(length, self.dim, device=self.table.device)  # (length, dim)


def export_module(model: MockingjayModel, layers: str | int | Sequence[int] = "all", front_end: str = "graph",
                  dft: bool = False) -> ExportModule:
    """The module that both exporters trace: a plain-kernel copy of ``model`` with the output selection."""
    if front_end not in FRONT_ENDS:
        raise ConfigError(f"front end {front_end!r}: expected 'graph' (waveforms in) or 'features' (log-mel in)")
    return ExportModule(plain_copy(model), layer_indices(layers, model.num_layers), front_end, dft).eval()


def output_names(module: ExportModule) -> list[str]:
    return [f"hidden_state_{i}" for i in module.layers] + ["lengths"]


def example_inputs(module: ExportModule) -> tuple[torch.Tensor, torch.Tensor]:
    """A ragged 2-utterance batch: the lengths differ, so no shape is specialised to 'all valid'."""
    if module.front_end == "features":
        return torch.randn(2, 100, module.model.config.input_dim), torch.tensor([100, 50])  # (B, T, D), (B,)
    S = module.model.sample_rate  # 1 s
    return torch.randn(2, S) * 0.1, torch.tensor([S, S // 2], dtype=torch.int64)  # (B, S), (B,)


def _dynamic_shapes(module: ExportModule):
    batch = torch.export.Dim("batch", min=1, max=4096)
    time = torch.export.Dim("time", min=1, max=2**31 - 2)  # samples, or frames for a features-in graph
    return {"x": {0: batch, 1: time}, "lens": {0: batch}}


def metadata(model: MockingjayModel, module: ExportModule, runtime: str) -> dict[str, str]:
    """What a user of the file needs to feed it and read it: front end settings, model config, I/O names."""
    from ..version import __version__

    return {
        "audiorep_version": __version__,
        "architecture": model.architecture,
        "model_config": json.dumps(model.config.to_dict()),
        "feature_config": json.dumps(model.feature_config.to_dict()),
        "front_end": module.front_end,
        "inputs": ("wavs: (batch, samples) float32 at %d Hz, zero-padded; wav_lens: (batch,) int64 samples"
                   % model.sample_rate if module.front_end == "graph" else
                   "feats: (batch, frames, %d) float32 log-mel features as feature_config describes them (CMVN "
                   "over each utterance's valid frames), zero past lengths; lengths: (batch,) int64 frames"
                   % model.config.input_dim),
        "outputs": ", ".join(output_names(module)) + " (hidden states (batch, frames, hidden), zero past lengths)",
        "runtime": runtime,
    }


def _check_out(out: Path, overwrite: bool) -> None:
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; give the file to write (e.g. {out / 'model.onnx'})")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists; pass --overwrite to replace it, or choose another file")


def _replace(tmp: Path, out: Path) -> None:
    os.replace(tmp, out)


def export_onnx(model: nn.Module, out: str | os.PathLike, layers: str | int | Sequence[int] = "all",
                opset: int = DEFAULT_ONNX_OPSET, overwrite: bool = False, quantize: str | None = None,
                front_end: str = "graph", source: str = "model") -> Path:
    """Write ``model`` as an ONNX file (waveforms in, hidden states out; dynamic batch and length).

    ``quantize="int8"`` then rewrites its MatMuls to dynamic int8 (onnxruntime's quantiser). The front end
    stays as exported (float64 spectrum and mel). The file's metadata holds the feature and model configs.
    Returns the path written.
    """
    model = check_exportable(model, source)
    out = Path(out)
    _check_out(out, overwrite)
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_ONNX_OPSET <= opset <= newest:
        raise ConfigError(f"--opset {opset}: cannot express this graph (front end and encoder need opset "
                          f"{MIN_ONNX_OPSET} or newer; the installed onnx knows up to {newest}); use --opset "
                          f"{DEFAULT_ONNX_OPSET}")
    if quantize not in (None, "int8"):
        raise ConfigError(f"quantize {quantize!r}: only 'int8' (dynamic int8 MatMuls) is supported")

    module = export_module(model, layers, front_end, dft=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    with torch.no_grad():
        program = torch.onnx.export(module, example_inputs(module), dynamo=True, opset_version=opset,
                                    input_names=module.input_names, output_names=output_names(module),
                                    dynamic_shapes=_dynamic_shapes(module), verbose=False,
                                    # the graph optimiser folds away adds of tiny constants (log and CMVN
                                    # epsilons), which turns silent or one-frame inputs into NaN
                                    optimize=False)
    proto = program.model_proto
    fold_weight_transposes(proto)
    meta = metadata(model, module, "onnx" if quantize is None else "onnx-int8")
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    try:
        onnx.save_model(proto, str(tmp))
        if quantize == "int8":
            quantize_onnx_int8(tmp, tmp)
        _replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def fold_weight_transposes(proto) -> None:
    """Replace each Transpose of a weight (an initialiser) by the transposed initialiser, in place.

    The exporter writes ``x @ Transpose(W)`` for every linear layer; folded, the MatMul reads a constant
    weight, which int8 quantisation requires and every runtime prefers. A weight transposed more than once
    (AALBERT's shared layer) is stored once."""
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    folded: dict[tuple[str, tuple[int, ...]], str] = {}
    rename: dict[str, str] = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Transpose" and node.input[0] in inits:
            perm = next((tuple(a.ints) for a in node.attribute if a.name == "perm"), None)
            key = (node.input[0], perm)
            if key not in folded:
                array = numpy_helper.to_array(inits[node.input[0]])
                name = f"{node.input[0]}.T" if perm in (None, (1, 0)) else node.output[0]
                graph.initializer.append(numpy_helper.from_array(array.transpose(perm).copy(), name))
                folded[key] = name
            rename[node.output[0]] = folded[key]
        else:
            keep.append(node)
    if not rename:
        return
    del graph.node[:]
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        graph.node.append(node)
    for out in graph.output:
        if out.name in rename:  # never a weight in practice; keep the graph valid regardless
            raise ValueError(f"graph output {out.name} is a folded weight")
    used = {i for n in graph.node for i in n.input}
    remaining = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(remaining)


def quantize_onnx_int8(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Dynamic int8 (weights int8 per channel, activations quantised per call) on the MatMuls of an ONNX file.

    Only the encoder's weight MatMuls qualify (the DFT and mel matrices stay float64: their inputs are not
    activations of a linear layer)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    # the encoder's weight MatMuls: B a float32 weight. The front end's DFT and mel matrices (float64) never
    # qualify: log features would amplify their rounding.
    front = {"dft", "model.features.mel_fb"}
    weights = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT} - front
    nodes = [n.name for n in proto.graph.node
             if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in weights]
    tmp = Path(str(dst) + ".q.tmp")
    try:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_quantize=nodes or None, extra_options={"MatMulConstBOnly": True})
        qproto = onnx.load(str(tmp))
        del qproto.metadata_props[:]
        for k, v in {**props, "runtime": "onnx-int8"}.items():
            e = qproto.metadata_props.add()
            e.key, e.value = k, v
        onnx.save_model(qproto, str(dst))
    finally:
        tmp.unlink(missing_ok=True)


def export_program(model: nn.Module, out: str | os.PathLike, layers: str | int | Sequence[int] = "all",
                   overwrite: bool = False, front_end: str = "graph", source: str = "model") -> Path:
    """Write ``model`` as a ``torch.export`` program (``torch.export.save``; load with ``torch.export.load``).

    Same inputs and outputs as the ONNX file (``program.module()(wavs, wav_lens)``); the configs ride in the
    file's extra files (``meta.json``)."""
    model = check_exportable(model, source)
    out = Path(out)
    _check_out(out, overwrite)
    module = export_module(model, layers, front_end)
    with torch.no_grad():
        program = torch.export.export(module, example_inputs(module), dynamic_shapes=_dynamic_shapes(module))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    try:
        meta = metadata(model, module, "torch.export")
        torch.export.save(program, str(tmp), extra_files={"meta.json": json.dumps(meta)})
        _replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def onnx_session(path: str | os.PathLike, threads: int | None = None, memory_arena: bool = True):
    """An onnxruntime CPU session for an exported file (``threads`` intra-op threads; None = runtime default).

    ``memory_arena=False`` hands each run's memory back: the graph's attention holds (B, heads, T, T) scores,
    gigabytes for a batch of 30 s inputs, which the arena would otherwise keep for the session's life."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_cpu_mem_arena = memory_arena
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def quantize_int8(model: nn.Module, source: str = "model") -> MockingjayModel:
    """Dynamic int8 linears in the transformer layers of ``model`` (CPU inference), in place; returns it.

    Weights are stored int8 per output channel, activations quantised per call (torch's
    ``quantize_dynamic``); the layers' GEMMs then run int8 (the kernels call a swapped-in module's own
    forward, see ``kernels.fused``). The input projection and the front end stay fp32: they are a small
    share of the work and feed everything after them."""
    from torch.ao.quantization import quantize_dynamic

    model = check_exportable(model, source)
    if next(model.parameters()).device.type != "cpu":
        raise ConfigError(f"{source}: int8 inference runs on CPU; load the model with device cpu")
    model.float().eval()
    model.layers = quantize_dynamic(model.layers, {nn.Linear}, dtype=torch.qint8)
    return model
