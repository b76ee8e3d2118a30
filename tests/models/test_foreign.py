"""hf: and torchaudio: upstreams: parity with the raw model, padding rules per family, Featurizer modes,
probes on the bundled corpus, cache keys, TEASEL's front end, and one-line errors. Offline: tiny random
models saved with save_pretrained into temp folders."""

from __future__ import annotations

import json

import pytest
import torch

import audiorep
from audiorep.errors import CheckpointError, ConfigError
from audiorep.models.foreign import ForeignUpstream, load_torchaudio
from audiorep.optional import available
from audiorep.probe import Featurizer

transformers = pytest.importorskip("transformers")

# strides multiply to 320 (20 ms at 16 kHz) like the real models, so the phone probe's label stride applies
CONV = dict(conv_dim=(16, 16, 16), conv_stride=(5, 8, 8), conv_kernel=(10, 8, 8))
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, **CONV)
# family -> (config class, model class, extra config); "wav2vec2-large" is the layer-norm / pre-LN variant
FAMILIES = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model", {}),
    "wav2vec2-large": ("Wav2Vec2Config", "Wav2Vec2Model", dict(feat_extract_norm="layer", do_stable_layer_norm=True)),
    "hubert": ("HubertConfig", "HubertModel", {}),
    "wavlm": ("WavLMConfig", "WavLMModel", dict(num_buckets=16, max_bucket_distance=64)),
    "data2vec-audio": ("Data2VecAudioConfig", "Data2VecAudioModel", dict(conv_pos_kernel_size=5,
                                                                         num_conv_pos_embeddings=5)),
}
# not padding-invariant: a group norm over time in the CNN, or (data2vec-audio) stacked positional convolutions
VARIANT = {"wav2vec2", "hubert", "wavlm", "data2vec-audio"}


def make_hf_folder(root, family: str, seed: int = 0):
    """A tiny random model of ``family`` saved like a hub checkpoint (config.json + model.safetensors)."""
    cfg_cls, model_cls, extra = FAMILIES[family]
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(getattr(transformers, cfg_cls)(**{**TINY, **extra})).eval()
    with torch.no_grad():  # move norms and biases off their init so every parameter matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    folder = root / family
    model.save_pretrained(str(folder))
    return folder, model


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {f: make_hf_folder(root, f) for f in FAMILIES}


def wavs():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(6400, generator=g) * 0.1, torch.randn(4100, generator=g) * 0.3,
            torch.randn(6400, generator=g) * 0.05]


def raw_reference(model, wav: torch.Tensor, mask: bool):
    """The transformers model alone on one utterance, normalised by transformers' own feature extractor."""
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=mask)
    x = fe(wav.numpy(), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        out = model(x.input_values, attention_mask=x.get("attention_mask"), output_hidden_states=True)
    states = list(out.hidden_states)
    states[-1] = out.last_hidden_state
    return states


@pytest.mark.parametrize("family", list(FAMILIES))
def test_hidden_states_match_transformers(hf_folders, family):
    folder, model = hf_folders[family]
    up = audiorep.load(f"hf:{folder}")
    assert isinstance(up, ForeignUpstream) and not up.training
    assert (up.num_layers, up.hidden_size, up.sample_rate, up.frame_hop, up.frame_rate) == (2, 32, 16000, 320, 50)
    assert up.padding_invariant is (family not in VARIANT)
    batch = wavs()
    with torch.no_grad():
        out = up(batch)  # one padded batch of unequal lengths
    assert len(out.hidden_states) == 3 and out.last_hidden_state is out.hidden_states[-1]
    expect = model._get_feat_extract_output_lengths(torch.tensor([w.numel() for w in batch]))
    assert out.lengths.tolist() == expect.tolist() == [19, 12, 19]
    worst = 0.0
    for i, w in enumerate(batch):
        T = int(out.lengths[i])
        ref = raw_reference(model, w, up.use_attention_mask)
        assert ref[0].shape[1] == T
        worst = max(worst, max((a[i, :T] - b[0]).abs().max().item() for a, b in zip(out.hidden_states, ref)))
        assert all(h[i, T:].abs().sum() == 0 for h in out.hidden_states)  # padding frames are zero
    assert worst < 1e-4, f"{family}: max abs diff vs transformers {worst:.2e}"


@pytest.mark.parametrize("family", ["wav2vec2", "wav2vec2-large", "data2vec-audio"])
def test_padding_rule_per_family(hf_folders, family):
    """Group-norm CNN (and data2vec-audio, even with its mask): padding changes the raw model's output, ours
    stays the single-utterance output. wav2vec2-large-style models with a mask: the raw padded batch already
    equals the single runs."""
    folder, model = hf_folders[family]
    up = audiorep.load(f"hf:{folder}")
    long, short = torch.randn(6400) * 0.1, torch.randn(3000) * 0.1
    with torch.no_grad():
        alone = up([short]).last_hidden_state[0]  # (T, H)
        batched = up([long, short])
        T = int(batched.lengths[1])
        assert (batched.last_hidden_state[1, :T] - alone).abs().max() < 1e-4
        fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=up.use_attention_mask)
        x = fe([long.numpy(), short.numpy()], sampling_rate=16000, padding=True, return_tensors="pt")
        raw = model(x.input_values, attention_mask=x.get("attention_mask")).last_hidden_state[1, :T]
    if family in VARIANT:
        assert (raw - alone).abs().max() > 1e-3  # the reason such models run in equal-length groups
    else:
        assert (raw - alone).abs().max() < 1e-4


def test_preprocessor_config_is_followed(tmp_path, hf_folders):
    folder, model = make_hf_folder(tmp_path, "wav2vec2")
    transformers.Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=False).save_pretrained(folder)
    up = audiorep.load(f"hf:{folder}")
    assert up.normalize is False and up.use_attention_mask is False
    w = torch.randn(4000) * 0.3
    with torch.no_grad():
        ref = model(w[None], output_hidden_states=True).last_hidden_state  # un-normalised input
        assert (up([w]).last_hidden_state - ref).abs().max() < 1e-5


def test_random_weights_from_config_and_short_input(hf_folders):
    folder, model = hf_folders["hubert"]
    rnd = audiorep.load(f"hf:{folder}", pretrained=False)
    same = dict(model.named_parameters())["encoder.layers.0.attention.q_proj.weight"]
    assert not torch.equal(dict(rnd.model.named_parameters())["encoder.layers.0.attention.q_proj.weight"], same)
    with torch.no_grad():
        out = rnd([torch.randn(100), torch.randn(5000)])  # 100 samples: shorter than one frame's 325
    assert out.lengths.tolist() == [1, 15]


@pytest.mark.parametrize("family", ["wav2vec2", "wavlm", "data2vec-audio"])
def test_featurizer_modes(hf_folders, family):
    folder, _ = hf_folders[family]
    batch = wavs()
    ws = Featurizer(audiorep.load(f"hf:{folder}"), mode="weighted-sum")
    feats, lens = ws(batch)
    assert feats.shape == (3, 19, 32) and ws.needed_states == [0, 1, 2]
    feats.sum().backward()
    assert ws.weights.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in ws.upstream.parameters())
    ft = Featurizer(audiorep.load(f"hf:{folder}"), mode="finetune")
    ft.train()
    assert ft.upstream.training
    feats, _ = ft(batch)
    feats.pow(2).mean().backward()
    grads = [p.grad for p in ft.upstream.model.encoder.layers[0].parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    last = Featurizer(audiorep.load(f"hf:{folder}"), mode="last")
    layer0 = Featurizer(audiorep.load(f"hf:{folder}"), mode="layer", layer=0)
    with torch.no_grad():
        out = last.upstream(batch)
        assert torch.equal(last(batch)[0], out.last_hidden_state)
        assert torch.equal(layer0(batch)[0], out.hidden_states[0])


def test_bad_sources_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        audiorep.load(f"hf:{tmp_path / 'empty'}")
    with pytest.raises(CheckpointError, match="no such model folder"):
        audiorep.load(f"hf:{tmp_path / 'missing'}")
    bert = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    transformers.BertModel(bert).save_pretrained(str(tmp_path / "bert"))
    with pytest.raises(ConfigError, match="'bert' model is not a supported speech encoder"):
        audiorep.load(f"hf:{tmp_path / 'bert'}")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read a transformers config"):
        audiorep.load(f"hf:{tmp_path / 'broken'}")


# ---------------------------------------------------------------------------------------------- torchaudio

TA_TINY = dict(extractor_conv_layer_config=[(16, 10, 5), (16, 8, 8), (16, 8, 8)], encoder_embed_dim=32,
               encoder_num_layers=2, encoder_num_heads=2, encoder_ff_interm_features=64, encoder_pos_conv_kernel=16,
               encoder_pos_conv_groups=2)
needs_torchaudio = pytest.mark.skipif(not available("torchaudio.pipelines"), reason="torchaudio does not load")


@needs_torchaudio
@pytest.mark.parametrize("bundle", ["WAV2VEC2_BASE", "WAV2VEC2_LARGE_LV60K", "HUBERT_BASE", "WAVLM_BASE_PLUS",
                                    "WAVLM_LARGE"])
def test_torchaudio_bundle_matches_torchaudio(bundle):
    up = load_torchaudio(bundle, pretrained=False, **TA_TINY)
    assert (up.num_layers, up.hidden_size, up.frame_hop) == (2, 32, 320)
    assert up.padding_invariant is ("LARGE" in bundle)
    batch = wavs()
    with torch.no_grad():
        out = up(batch)
        for i, w in enumerate(batch):
            x = torch.nn.functional.layer_norm(w[None], w[None].shape) if up.normalize else w[None]
            ref = up.model.extract_features(x)[0]  # torchaudio alone: one output per layer, one utterance
            T = int(out.lengths[i])
            assert ref[0].shape[1] == T
            # the last layer: torchaudio's extract_features stops before a pre-LN model's final LayerNorm
            cmp = list(zip(out.hidden_states[1:], ref)) if "LARGE" not in bundle else list(zip(out.hidden_states[1:-1], ref[:-1]))
            assert max((a[i, :T] - b[0]).abs().max().item() for a, b in cmp) < 1e-4
            full, _ = up.model(x)  # torchaudio's forward: the last hidden state, final LayerNorm included
            assert (out.last_hidden_state[i, :T] - full[0]).abs().max() < 1e-4


@needs_torchaudio
def test_torchaudio_load_by_name_and_errors():
    up = audiorep.load("torchaudio:WAV2VEC2_BASE", pretrained=False)  # the full base architecture, random weights
    assert (up.num_layers, up.hidden_size, up.frame_hop, up.sample_rate) == (12, 768, 320, 16000)
    with torch.no_grad():
        out = up([torch.randn(3200) * 0.1])
    assert len(out.hidden_states) == 13 and out.last_hidden_state.shape == (1, 9, 768)
    Featurizer(up, mode="weighted-sum")  # num_layers / hidden_size are there
    with pytest.raises(ConfigError, match="not a speech-encoder bundle.*WAV2VEC2_BASE"):
        audiorep.load("torchaudio:TACOTRON2_WAVERNN_CHAR_LJSPEECH", pretrained=False)
    with pytest.raises(ConfigError, match="torchaudio:NOPE"):
        audiorep.load("torchaudio:NOPE")


# ---------------------------------------------------------------------------------- probes, caches, TEASEL


@pytest.fixture(scope="module")
def bundled():
    from audiorep.data import list_corpora

    if "synth" not in list_corpora():
        pytest.skip("bundled corpus not present")
    return "synth"


@pytest.mark.parametrize("family,mode", [("wav2vec2", "weighted-sum"), ("hubert", "finetune"),
                                         ("wavlm", "weighted-sum"), ("data2vec-audio", "last")])
def test_one_epoch_probe_on_bundled_utterances(tmp_path, hf_folders, bundled, family, mode):
    from audiorep.probe import DownstreamConfig, run_downstream

    folder, _ = hf_folders[family]
    cfg = DownstreamConfig(task="phone", upstream=f"hf:{folder}", mode=mode, data=bundled, max_utts=4, epochs=1,
                           out_dir=str(tmp_path / "run"), progress=False, device="cpu")
    res = run_downstream(cfg)
    assert res.epochs_run == 1 and 0.0 <= res.test["frame_acc"] <= 1.0 and res.test["frames"] > 0
    assert len(res.layer_weights) == 3


def test_cli_downstream_with_hf_upstream(tmp_path, hf_folders, bundled, capsys):
    from audiorep.cli import main

    folder, _ = hf_folders["wav2vec2"]
    rc = main(["downstream", "--task", "phone", "--upstream", f"hf:{folder}", "--mode", "weighted-sum",
               "--max-utts", "4", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "cli")])
    assert rc == 0
    kv = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert 0.0 <= float(kv["test_frame_acc"]) <= 1.0 and len(kv["layer_weights"].split()) == 3


def test_phone_labels_follow_20ms_frames():
    from audiorep.probe.tasks.phone import PhoneTask

    task = PhoneTask(head="frame-linear")
    task.labels = {"u": torch.arange(101)}  # 10 ms labels of one second
    task.match_frame_hop(320, 16000)
    assert task.target(type("U", (), {"id": "u"})(), 49)[:3].tolist() == [1, 3, 5]  # nearest each frame's centre
    with pytest.raises(ConfigError, match="7.5 ms"):
        task.match_frame_hop(120, 16000)


def test_cache_key_follows_the_weights(tmp_path, hf_folders):
    from audiorep.probe.cache import feature_cache_key

    folder, _ = make_hf_folder(tmp_path, "wav2vec2")
    a, b = audiorep.load(f"hf:{folder}"), audiorep.load(f"hf:{folder}")
    assert feature_cache_key(a, layer=None) == feature_cache_key(b, layer=None)  # same folder, same key
    with torch.no_grad():
        next(b.parameters()).add_(1e-3)  # new weights
    assert feature_cache_key(b, layer=None) != feature_cache_key(a, layer=None)


def test_teasel_front_end_from_hf(tmp_path, hf_folders):
    from audiorep.multimodal import load_run_config
    from audiorep.multimodal.teasel_run import build_front_end, front_end_key

    folder, _ = hf_folders["wav2vec2-large"]
    cfg = load_run_config(None, ["front_end=upstream", f"upstream=hf:{folder}", "layer=-1"])
    fe, label = build_front_end(cfg)
    assert "trained" in label and fe.output_dim == 32 and fe.sample_rate == 16000
    raw, lens = fe.frozen_features([torch.randn(6400) * 0.1, torch.randn(3200) * 0.1])
    assert raw.shape == (2, 19, 32) and lens.tolist() == [19, 9]
    ws = load_run_config(None, ["front_end=upstream", f"upstream=hf:{folder}"])
    fe_ws, _ = build_front_end(ws)
    stacked, _ = fe_ws.frozen_features([torch.randn(6400) * 0.1])
    assert stacked.shape == (1, 3, 19, 32) and fe_ws(stacked).shape == (1, 19, 32)
    key = front_end_key(cfg, fe)
    assert front_end_key(cfg, build_front_end(cfg)[0]) == key  # the same weights, the same cached features
    with torch.no_grad():
        next(fe.parameters()).add_(1e-3)
    assert front_end_key(cfg, fe) != key
    json.loads((folder / "config.json").read_text())  # the folder is still a plain transformers folder


@pytest.mark.parametrize("rate", [0, -16000, 16000.5])
def test_preprocessor_sampling_rate_out_of_range_is_refused(tmp_path, rate):
    folder, _ = make_hf_folder(tmp_path, "wav2vec2")
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=rate).save_pretrained(folder)
    with pytest.raises(audiorep.CheckpointError, match=r"preprocessor_config.json: sampling_rate must be an "
                                                      r"integer in \[1000, 1000000\] Hz"):
        audiorep.load(f"hf:{folder}")


# ------------------------------------------------------------------------------------ hostile hf: folders


def _rewrite_weights(folder, edit):
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("fault, message", [
    ("missing", r"w2v: the weights do not fill the model its config describes: missing encoder\.layer_norm\.weight"),
    ("mismatched", r"w2v: weight shapes do not match config\.json: encoder\.layer_norm\.weight: file \(33,\)"),
    ("nan", r"w2v: tensor 'encoder\.layer_norm\.weight' holds 32 NaN"),
])
def test_hf_folder_with_missing_mismatched_or_nan_weights_is_refused(tmp_path, fault, message, capfd):
    folder, _ = make_hf_folder(tmp_path, "wav2vec2")
    folder = folder.rename(tmp_path / "w2v")
    key = "encoder.layer_norm.weight"

    def edit(state):
        if fault == "missing":
            del state[key]
        elif fault == "mismatched":
            state[key] = torch.ones(33)
        else:
            state[key] = torch.full_like(state[key], float("nan"))

    _rewrite_weights(folder, edit)
    capfd.readouterr()
    with pytest.raises(CheckpointError, match=message) as info:
        audiorep.load(f"hf:{folder}")
    assert "\n" not in str(info.value)
    assert "MISSING" not in capfd.readouterr().err  # transformers' own report table is not printed


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_hf_folder_saved_in_half_precision_runs_in_float32(tmp_path, dtype):
    folder, model = make_hf_folder(tmp_path, "wav2vec2")
    model.to(dtype).save_pretrained(str(folder))
    up = audiorep.load(f"hf:{folder}")
    assert all(p.dtype == torch.float32 for p in up.parameters())
    with torch.no_grad():
        out = up(wavs())
    assert out.last_hidden_state.dtype == torch.float32
    assert bool(torch.isfinite(out.last_hidden_state).all())
