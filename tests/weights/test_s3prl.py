"""Import of s3prl Mockingjay/AALBERT checkpoints: safe unpickling, config mapping, and hidden-state parity."""

import argparse
import sys
import types

import pytest
import torch

import audiorep
from audiorep.weights.s3prl import export_s3prl_checkpoint, load_s3prl_checkpoint

s3model = pytest.importorskip("s3prl.upstream.mockingjay.model")


@pytest.fixture(autouse=True)
def _short_s3prl_position_table(monkeypatch):
    """s3prl builds a 24000-row sinusoid table in a Python loop (minutes on 2 cores); our inputs need < 400
    rows, so let its own code build a shorter table."""
    builder = pytest.importorskip("s3prl.upstream.mockingjay.builder")
    monkeypatch.setattr(builder, "MAX_SEQLEN", 2000)
    builder.get_sinusoid_table.cache_clear()
    yield
    builder.get_sinusoid_table.cache_clear()

AUDIO = {"target_level": -25, "win_ms": 25, "hop_ms": 10, "n_freq": 201, "n_mels": 80, "n_mfcc": 13,
         "input": {"feat_type": "mel", "channel": 0, "log": True, "delta": 0, "cmvn": True},
         "target": {"feat_type": "mel", "channel": 0, "log": True, "delta": 0, "cmvn": True}}


def transformer_cfg(share: bool, layers: int = 3, hidden: int = 768, heads: int = 12, ffn: int = 3072):
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, "hidden_act": "gelu",
            "intermediate_size": ffn, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "share_layer": share, "pre_layer_norm": False}


def make_s3prl_checkpoint(path, share: bool, legacy: bool = False, **size):
    """A random-weight checkpoint built by s3prl's own classes, in the layout its runner saves."""
    tcfg = transformer_cfg(share, **size)
    cfg = s3model.TransformerConfig(tcfg)
    model = s3model.TransformerModel(cfg, 80)
    head = s3model.TransformerSpecPredictionHead(cfg, 80)
    with torch.no_grad():  # move LayerNorms and biases off their init so every parameter matters
        for p in list(model.parameters()) + list(head.parameters()):
            p.add_(torch.randn_like(p) * 0.05)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4)
    model(torch.randn(1, 5, 80), torch.zeros(1, 5, tcfg["hidden_size"]), torch.ones(1, 5))[-1].sum().backward()
    opt.step()
    upstream = {"transformer": tcfg, "task": {"sequence_length": 1500}, "audio": AUDIO}
    enc = model.state_dict()
    if legacy:  # pre-2020 files: gamma/beta LayerNorm names and the upstream config under 'Config'
        enc = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in enc.items()}
    states = {"Transformer": enc, "SpecHead": head.state_dict(), "Optimizer": opt.state_dict(), "Step": 1000,
              "Args": argparse.Namespace(config="x.yaml", seed=1337)}
    if legacy:
        states["Config"] = upstream
    else:
        states["Upstream_Config"] = upstream
        states["Config"] = {"runner": {"total_steps": 1000000}}
    torch.save(states, path)
    return path


def s3prl_alone(ckpt, wavs):
    from s3prl.upstream.mockingjay.expert import UpstreamExpert

    ref = UpstreamExpert(str(ckpt)).eval()
    with torch.no_grad():
        return [ref([w])["hidden_states"] for w in wavs]


@pytest.mark.parametrize("share", [False, True], ids=["mockingjay", "aalbert"])
def test_hidden_states_match_s3prl(tmp_path, share):
    ckpt = make_s3prl_checkpoint(tmp_path / "states-1000.ckpt", share)
    wavs = [torch.randn(16000) * 0.1, torch.randn(24000) * 0.05, torch.randn(8000) * 0.2]
    ours = audiorep.load(ckpt)
    assert ours.config.share_layers is share and ours.num_layers == 3
    with torch.inference_mode():
        out = ours(wavs)  # one padded batch
    refs = s3prl_alone(ckpt, wavs)
    worst = 0.0
    for i, ref in enumerate(refs):
        T = int(out.lengths[i])
        assert len(ref) == len(out.hidden_states) == 4
        for a, b in zip(out.hidden_states, ref):
            assert b.shape[1] == T
            worst = max(worst, (a[i, :T] - b[0]).abs().max().item())
    print(f"max abs diff vs s3prl ({'aalbert' if share else 'mockingjay'}): {worst:.2e}")
    assert worst < 1e-4


def test_legacy_layout_and_export_roundtrip(tmp_path):
    ckpt = make_s3prl_checkpoint(tmp_path / "old.ckpt", share=False, legacy=True, layers=2, hidden=64, heads=4, ffn=128)
    model, head = load_s3prl_checkpoint(ckpt, with_head=True)
    model.eval()
    assert head is not None and model.config.hidden_size == 64
    out = tmp_path / "exported.ckpt"
    export_s3prl_checkpoint(model, out, head=head)
    wav = [torch.randn(4800)]
    with torch.inference_mode():
        a = model(wav).hidden_states
    b = s3prl_alone(out, wav)[0]  # s3prl reads what we export
    assert max((x[0] - y[0]).abs().max().item() for x, y in zip(a, b)) < 1e-4


def test_export_of_shared_layers_loads_in_s3prl(tmp_path):
    m = audiorep.load("aalbert-base", pretrained=False)
    out = tmp_path / "aalbert.ckpt"
    export_s3prl_checkpoint(m, out)
    wav = [torch.randn(8000) * 0.1]
    with torch.inference_mode():
        a = m(wav).last_hidden_state[0]
    assert (a - s3prl_alone(out, wav)[0][-1][0]).abs().max() < 1e-4


executed = []


class Payload:
    """Pickles as a call to `record_execution`; a safe loader must refuse it without calling it."""

    def __reduce__(self):
        return (record_execution, ("pwned",))


def record_execution(tag):
    executed.append(tag)
    return tag


def test_foreign_pickled_object_is_refused_without_running_it(tmp_path):
    ckpt = make_s3prl_checkpoint(tmp_path / "ok.ckpt", share=True, layers=1, hidden=32, heads=2, ffn=64)
    states = torch.load(ckpt, weights_only=False)
    states["Args"] = Payload()
    torch.save(states, tmp_path / "evil.ckpt")
    with pytest.raises(audiorep.CheckpointError, match="refusing to unpickle .*record_execution") as err:
        audiorep.load(tmp_path / "evil.ckpt")
    assert "evil.ckpt" in str(err.value)
    assert executed == []


def test_legacy_optimizer_objects_become_inert(tmp_path, monkeypatch):
    fake = types.ModuleType("optimizers")

    class BertAdam:  # stands for s3prl's old pickled optimiser class
        def __init__(self):
            self.lr = 1e-4

    BertAdam.__module__ = "optimizers"
    BertAdam.__qualname__ = "BertAdam"
    fake.BertAdam = BertAdam
    monkeypatch.setitem(sys.modules, "optimizers", fake)
    ckpt = make_s3prl_checkpoint(tmp_path / "ok.ckpt", share=False, layers=1, hidden=32, heads=2, ffn=64)
    states = torch.load(ckpt, weights_only=False)
    states["Scheduler"] = BertAdam()
    torch.save(states, tmp_path / "old_sched.ckpt")
    monkeypatch.delitem(sys.modules, "optimizers")
    assert audiorep.load(tmp_path / "old_sched.ckpt").num_layers == 1


def test_other_checkpoints_are_refused_clearly(tmp_path):
    torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "wav2vec.pt")
    with pytest.raises(audiorep.CheckpointError, match="not an s3prl Mockingjay"):
        audiorep.load(tmp_path / "wav2vec.pt")
    (tmp_path / "trunc.ckpt").write_bytes(
        (make_s3prl_checkpoint(tmp_path / "x.ckpt", share=True, layers=1, hidden=32, heads=2, ffn=64)).read_bytes()[:5000])
    with pytest.raises(audiorep.CheckpointError, match="trunc.ckpt"):
        audiorep.load(tmp_path / "trunc.ckpt")
    states = torch.load(tmp_path / "x.ckpt", weights_only=False)
    states["Upstream_Config"]["transformer"]["pre_layer_norm"] = True
    torch.save(states, tmp_path / "preln.ckpt")
    with pytest.raises(audiorep.CheckpointError, match="pre-LayerNorm"):
        audiorep.load(tmp_path / "preln.ckpt")


def test_cli_convert_to_s3prl_loads_in_s3prl(tmp_path, capsys):
    from audiorep.cli import main
    from audiorep.models import MockingjayModel, mockingjay_config

    m = MockingjayModel(mockingjay_config(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)).eval()
    folder = m.save_pretrained(tmp_path / "my-model")
    out = tmp_path / "export" / "out.ckpt"
    assert main(["convert", str(folder), "--to", "s3prl", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    wav = [torch.randn(6400) * 0.1]
    with torch.inference_mode():
        ours = m(wav).hidden_states
    theirs = s3prl_alone(out, wav)[0]  # s3prl's own UpstreamExpert reads the file
    assert len(theirs) == len(ours) == 3
    assert max((a[0] - b[0]).abs().max().item() for a, b in zip(ours, theirs)) < 1e-4
    # the default direction still reads an s3prl checkpoint into a folder
    assert main(["convert", str(out), str(tmp_path / "back")]) == 0
    with torch.inference_mode():
        assert (audiorep.load(tmp_path / "back")(wav).last_hidden_state - ours[-1]).abs().max() < 1e-5
    assert main(["convert", str(folder), "--to", "s3prl", str(tmp_path)]) == 2  # a folder is not a .ckpt
    assert "writes one checkpoint file" in capsys.readouterr().err
