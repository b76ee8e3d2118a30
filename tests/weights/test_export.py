"""ONNX / torch.export of the native encoders: parity with eager PyTorch on ragged batches of real recordings,
int8, and the export command's one-line errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import audiorep
from audiorep.audio import batch_waveforms
from audiorep.cli import main
from audiorep.data import get_corpus
from audiorep.errors import ConfigError
from audiorep.features import FeatureConfig, dft_basis
from audiorep.models.mockingjay import MockingjayConfig, MockingjayModel
from audiorep.weights import export as ex

PARITY = 1e-4  # max abs, every exported state


def _small(**kw) -> MockingjayModel:
    """A small encoder with both extras of the family: factorised embedding and the distance bias."""
    cfg = dict(hidden_size=64, num_heads=4, intermediate_size=128, num_layers=2, embedding_size=32,
               distance_bias=True)
    torch.manual_seed(0)
    return MockingjayModel(MockingjayConfig(**{**cfg, **kw}), FeatureConfig()).eval()


@pytest.fixture(scope="module")
def recordings() -> list[torch.Tensor]:
    utts = get_corpus("synth").utterances()[:5]
    return [audiorep.read_audio(u.path, 16000)[0] for u in utts]


def _ragged(recordings):
    """Real recordings of different lengths plus a 1-sample one (one frame) and a 170-sample one."""
    wavs = list(recordings) + [recordings[0][:1], recordings[1][:170]]
    return batch_waveforms(wavs, None)  # (B, S), (B,)


def _eager(model, wavs, lens):
    with torch.inference_mode():
        return model(wavs, lens)


def _max_err(got, ref, T):
    """Max abs difference over the eager frames; the exported graph's one extra padding frame must be zero."""
    got = torch.as_tensor(np.asarray(got))
    assert got.shape[1] == T + 1 and float(got[:, T:].abs().max()) == 0.0
    return float((got[:, :T] - ref).abs().max())


def test_torch_export_parity_ragged(tmp_path, recordings):
    model = _small()
    wavs, lens = _ragged(recordings)
    ref = _eager(model, wavs, lens)
    path = ex.export_program(model, tmp_path / "m.pt2")
    prog = torch.export.load(str(path)).module()
    with torch.no_grad():
        out = prog(wavs, lens)
        single = prog(wavs[-2:-1, :1], lens[-2:-1])  # a batch of one 1-sample utterance
    T = ref.hidden_states[0].shape[1]
    assert len(out) == model.num_layers + 2
    assert torch.equal(out[-1], ref.lengths)
    for got, want in zip(out, ref.hidden_states):
        assert _max_err(got, want, T) <= PARITY
    alone = _eager(model, wavs[-2:-1, :1], lens[-2:-1])
    assert _max_err(single[-2], alone.hidden_states[-1], 1) <= PARITY


@pytest.mark.slow
def test_torch_export_minutes_long(tmp_path, recordings):
    """About 2 minutes (12,000 frames) through a 3-layer model whose graph was traced on 1 s: no length cap."""
    model = _small(hidden_size=32, num_heads=1, intermediate_size=64, num_layers=3, embedding_size=None)
    long = torch.cat(recordings * 8)[: 16000 * 120]  # (S,)
    wavs, lens = batch_waveforms([long, recordings[2]], None)
    ref = _eager(model, wavs, lens)
    prog = torch.export.load(str(ex.export_program(model, tmp_path / "long.pt2", layers="last"))).module()
    with torch.no_grad():
        out = prog(wavs, lens)
    assert _max_err(out[0], ref.last_hidden_state, ref.last_hidden_state.shape[1]) <= PARITY


def test_onnx_features_in_parity(tmp_path, recordings):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _small(share_layers=True, num_layers=3)
    wavs, lens = _ragged(recordings)
    ref = _eager(model, wavs, lens)
    feats, frames = model.extract_features(wavs, lens)
    path = ex.export_onnx(model, tmp_path / "f.onnx", front_end="features")
    sess = ex.onnx_session(path)
    out = sess.run(None, {"feats": feats.numpy(), "lengths": frames.numpy()})
    T = feats.shape[1]
    for got, want in zip(out, ref.hidden_states):
        assert _max_err(got, want, T) <= PARITY
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["front_end"] == "features" and '"n_mels": 80' in meta["feature_config"]


def _exact_front_end(model, wavs, lens):
    """Hidden states from eager PyTorch with the float64 DFT front end the ONNX graph holds (no FFT rounding)."""
    basis = dft_basis(model.features.window, model.feature_config.n_fft, torch.float64)
    with torch.inference_mode():
        feats, frames = model.features(wavs, lens, dft_basis=basis)
        return model.encode(feats, frames).hidden_states


def test_onnx_waveform_parity(tmp_path, recordings):
    """Waveforms in: within PARITY of eager fp32, and of eager with the graph's own float64 DFT front end."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _small()
    wavs, lens = _ragged(recordings)
    ref = _eager(model, wavs, lens)
    exact = _exact_front_end(model, wavs, lens)
    path = ex.export_onnx(model, tmp_path / "w.onnx", layers=[0, -1])
    out = ex.onnx_session(path).run(None, {"wavs": wavs.numpy(), "wav_lens": lens.numpy()})
    T = ref.hidden_states[0].shape[1]
    assert len(out) == 3 and np.array_equal(out[-1], ref.lengths.numpy())
    for got, want, same in zip(out[:2], (ref.hidden_states[0], ref.hidden_states[-1]), (exact[0], exact[-1])):
        assert _max_err(got, want, T) <= PARITY
        assert _max_err(got, same, T) <= PARITY / 4
    import onnx

    dft = next(i for i in onnx.load(str(path)).graph.initializer if i.name == "dft")
    assert dft.data_type == onnx.TensorProto.DOUBLE  # float32 here adds its rounding to eager's in quiet bins


def test_onnx_int8_quantises_the_encoder(tmp_path, recordings):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    model = _small()
    wavs, lens = _ragged(recordings[:2])
    ref = _eager(model, wavs, lens)
    path = ex.export_onnx(model, tmp_path / "q.onnx", layers="last", quantize="int8")
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert "DynamicQuantizeLinear" in ops
    # the front end's DFT and mel products stay float MatMuls; every encoder linear became int8
    inits = {i.name for i in graph.initializer}
    front = {i.name: i.data_type for i in graph.initializer if i.name in ("dft", "model.features.mel_fb")}
    assert front == {"dft": onnx.TensorProto.DOUBLE, "model.features.mel_fb": onnx.TensorProto.DOUBLE}
    assert [n.input[1] for n in graph.node if n.op_type == "MatMul" and n.input[1] in inits] == [
        "dft", "model.features.mel_fb"]
    # input and embedding projections, then qkv, out, ffn_in, ffn_out of each layer
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) == 2 + 4 * model.num_layers
    got = ex.onnx_session(path).run(None, {"wavs": wavs.numpy(), "wav_lens": lens.numpy()})[0]
    T = ref.last_hidden_state.shape[1]
    err = (torch.as_tensor(got[:, :T]) - ref.last_hidden_state).abs()
    assert 0.0 < float(err.mean()) < 0.05


def test_quantize_int8_runs_int8_gemms(recordings):
    model = _small(distance_bias=False)
    wavs, lens = _ragged(recordings[:3])
    ref = _eager(model, wavs, lens)
    q = ex.quantize_int8(copy.deepcopy(model))
    assert type(q.layers[0].ffn_in).__module__.startswith("torch.ao.nn.quantized")
    out = _eager(q, wavs, lens)
    for got, want in zip(out.hidden_states[1:], ref.hidden_states[1:]):
        err = float((got - want).abs().mean())
        assert 0.0 < err < 0.05  # not zero: the fp32 weights are no longer what runs
    assert torch.equal(out.hidden_states[0], ref.hidden_states[0])  # input projection stays fp32


def test_layer_selection_errors():
    assert ex.layer_indices("all", 3) == [0, 1, 2, 3]
    assert ex.layer_indices("last", 3) == [3]
    assert ex.layer_indices(["0", "-1"], 3) == [0, 3]
    with pytest.raises(ConfigError, match="hidden states 0..3"):
        ex.layer_indices(7, 3)


def test_export_refuses_foreign_models():
    with pytest.raises(ConfigError, match="optimum-cli"):
        ex.check_exportable(torch.nn.Linear(2, 2), "hf:facebook/wav2vec2-base")


@pytest.mark.parametrize("extra,message", [
    (["--opset", "16"], "--opset 16: cannot express"),
    ([], "already exists; pass --overwrite"),
])
def test_export_command_one_line_errors(tmp_path, capsys, extra, message):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"mine")
    if extra:
        out = tmp_path / "new.onnx"
    assert main(["export", "aalbert-base", str(out), "--no-pretrained", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert (tmp_path / "m.onnx").read_bytes() == b"mine"


def test_export_command_hf_model(tmp_path, capsys):
    assert main(["export", "hf:facebook/wav2vec2-base", str(tmp_path / "x.onnx")]) == 2
    assert "optimum-cli export onnx" in capsys.readouterr().err


def test_export_command_torch(tmp_path, capsys):
    folder = _small(num_layers=1).save_pretrained(tmp_path / "model")
    out = tmp_path / "m.pt2"
    assert main(["export", str(folder), str(out), "--to", "torch", "--layers", "last"]) == 0
    prog = torch.export.load(str(out)).module()
    wavs = torch.randn(2, 4000) * 0.1
    with torch.no_grad():
        got = prog(wavs, torch.tensor([4000, 2500]))
    assert len(got) == 2 and got[0].shape == (2, 27, 64)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["aalbert-base", "tera-base", "mockingjay-base"])
def test_published_architectures_parity(tmp_path, recordings, name):
    """The released architectures with random weights: torch.export and ONNX (features in) within PARITY of
    eager; ONNX waveforms in within PARITY of the float64 front end it holds."""
    pytest.importorskip("onnxruntime")
    model = audiorep.load(name, pretrained=False)
    wavs, lens = _ragged(recordings)
    ref = _eager(model, wavs, lens)
    T = ref.hidden_states[0].shape[1]
    prog = torch.export.load(str(ex.export_program(model, tmp_path / "m.pt2"))).module()
    with torch.no_grad():
        out = prog(wavs, lens)
    feats, frames = model.extract_features(wavs, lens)
    onnx_out = ex.onnx_session(ex.export_onnx(model, tmp_path / "m.onnx", front_end="features")).run(
        None, {"feats": feats.numpy(), "lengths": frames.numpy()})
    for a, b, want in zip(out, onnx_out, ref.hidden_states):
        assert _max_err(a, want, T) <= PARITY
        assert _max_err(b, want, T) <= PARITY
    # Waveforms in: eager fp32's own FFT rounding in quiet mel bins (these recordings' empty top band) is about
    # 2x PARITY here, so the graph is held to PARITY against the same front end in float64, and may add at
    # most PARITY / 4 to eager's own error against it.
    exact = _exact_front_end(model, wavs, lens)
    wave_out = ex.onnx_session(ex.export_onnx(model, tmp_path / "w.onnx")).run(
        None, {"wavs": wavs.numpy(), "wav_lens": lens.numpy()})
    for got, want, same in zip(wave_out, ref.hidden_states, exact):
        assert _max_err(got, same, T) <= PARITY
        assert _max_err(got, want, T) <= float((same - want).abs().max()) + PARITY / 4


def test_extract_precision_int8(tmp_path, capsys):
    from safetensors.torch import load_file

    folder = _small(distance_bias=False).save_pretrained(tmp_path / "model")
    wav = str(get_corpus("synth").utterances()[0].path)
    fp32, int8 = tmp_path / "fp32.safetensors", tmp_path / "int8.safetensors"
    assert main(["extract", str(folder), wav, "--out", str(fp32), "--layer", "-1"]) == 0
    assert main(["extract", str(folder), wav, "--out", str(int8), "--layer", "-1", "--precision", "int8"]) == 0
    a, b = load_file(str(fp32))[wav], load_file(str(int8))[wav]
    assert a.shape == b.shape and 0.0 < float((a - b).abs().mean()) < 0.05
