"""Fusion heads: ULGM by hand, DMD loss properties, DeepMLF gates/freezing, every head on an MMSA pickle."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from audiorep.multimodal import (
    DMD, ULGM, DeepMLF, DeepMLFConfig, DMDConfig, FusionConfig, GDUnit, TextEncoder, build_head, load_mmsa_splits,
    margin_loss, orthogonality_loss, train_one,
)



@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models: extra intra-op threads only fight the other test processes on a shared 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


WORDS = "the movie was good bad great awful not very fine boring lovely a bit".split()


def _word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    t = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    from tokenizers.processors import TemplateProcessing

    t.post_processor = TemplateProcessing(single="[CLS] $A", special_tokens=[("[CLS]", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=t, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   eos_token="[SEP]")


def _tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=len(WORDS) + 4, hidden_size=32, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(WORDS) + 4, n_embd=32, n_layer=2, n_head=2, n_positions=64))


def _write_pickle(path, n=(12, 6, 6), da=5, dv=7, dt=32, seed=0):
    rng = np.random.default_rng(seed)
    obj = {}
    for split, N in zip(("train", "valid", "test"), n):
        La, Lv, L = 20, 15, 8
        audio = rng.normal(size=(N, La, da)).astype(np.float32)
        vision = rng.normal(size=(N, Lv, dv)).astype(np.float32)
        alen = rng.integers(3, La + 1, size=N)
        vlen = rng.integers(1, Lv + 1, size=N)  # includes very short vision sequences
        for i in range(N):
            audio[i, alen[i]:] = 0
            vision[i, vlen[i]:] = 0
        words = [" ".join(rng.choice(WORDS, size=rng.integers(2, 7))) for _ in range(N)]
        obj[split] = {
            "raw_text": np.array(words, dtype=object).tolist(), "audio": audio, "vision": vision,
            "text": rng.normal(size=(N, L, dt)).astype(np.float32), "id": [f"v{i}$_$0" for i in range(N)],
            "audio_lengths": alen.tolist(), "vision_lengths": vlen.tolist(),
            "regression_labels": rng.uniform(-3, 3, size=N).astype(np.float32),
        }
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


# ---------------------------------------------------------------- ULGM

def test_ulgm_labels_by_hand():
    # 1-D features, fusion "M" and one modality "T"; 4 samples with labels +2, +1, -1, -2
    u = ULGM({"M": 1, "T": 1}, label_range=3.0)
    y = torch.tensor([2.0, 1.0, -1.0, -2.0])
    u.reset(y)
    assert torch.equal(u.label("T"), y) and torch.equal(u.label("M"), y)  # unimodal labels start at y_m
    fM = torch.tensor([[3.0], [1.0], [-1.0], [-3.0]])
    fT = torch.tensor([[2.0], [2.0], [0.0], [-2.0]])
    idx = torch.arange(4)
    u.step({"M": fM, "T": fT}, idx, epoch=1)  # epoch 1: store + centres only
    assert torch.equal(u.label("T"), y)
    # centres: M pos mean(3,1)=2, neg mean(-1,-3)=-2; T pos mean(2,2)=2, neg mean(0,-2)=-1
    assert u.center_pos_M.item() == 2.0 and u.center_neg_M.item() == -2.0
    assert u.center_pos_T.item() == 2.0 and u.center_neg_T.item() == -1.0
    # sample 0 in epoch 2 with new features fM=2, fT=1:
    #   M: d_p=0, d_n=4 -> delta_f = 4/(0+eps) huge; use fM=1 instead: d_p=1, d_n=3 -> delta_f = 2
    #   T: fT=1: d_p=1, d_n=2 -> delta_s = 1;  alpha = 1/2
    #   y_new = 0.5*0.5*2 + 0.5*(2 + 1 - 2) = 0.5 + 0.5 = 1.0;  momentum n=2: 1/3*2 + 2/3*1 = 4/3
    new = u.new_labels({"M": torch.tensor([[1.0]]), "T": torch.tensor([[1.0]])}, torch.tensor([0]))
    assert new["T"].item() == pytest.approx(1.0, abs=1e-6)
    u.step({"M": torch.tensor([[1.0]]), "T": torch.tensor([[1.0]])}, torch.tensor([0]), epoch=2)
    assert u.label("T")[0].item() == pytest.approx(4 / 3, abs=1e-6)
    assert u.label("M")[0].item() == 2.0  # the fusion label never moves
    assert torch.equal(u.label("T")[1:], y[1:])  # only the batch's samples change
    # clipping: a large delta_s pushes the label past H=3
    # sample 3 (y=-2): fM=-1 -> d_p=|-1-2|=3, d_n=|-1+2|=1 -> delta_f=(1-3)/3=-2/3;
    # fT=10 -> d_p=|10-2|=8... centres were recomputed after the last step: T pos now mean(1,2)=1.5, neg -1
    # d_p=8.5, d_n=11 -> delta_s=2.5/8.5; alpha=delta_s/delta_f=-0.441..; y=0.5*alpha*(-2)+0.5*(-2+delta_s+2/3)
    cpT, cnT = u.center_pos_T.item(), u.center_neg_T.item()
    cpM, cnM = u.center_pos_M.item(), u.center_neg_M.item()
    d_f = (abs(-1 - cnM) - abs(-1 - cpM)) / (abs(-1 - cpM) + 1e-8)
    d_s = (abs(10 - cnT) - abs(10 - cpT)) / (abs(10 - cpT) + 1e-8)
    want = float(np.clip(0.5 * (d_s / (d_f + 1e-8)) * -2 + 0.5 * (-2 + d_s - d_f), -3, 3))
    got = u.new_labels({"M": torch.tensor([[-1.0]]), "T": torch.tensor([[10.0]])}, torch.tensor([3]))["T"].item()
    assert got == pytest.approx(want, rel=1e-5)
    big = u.new_labels({"M": torch.tensor([[1.999]]), "T": torch.tensor([[1.5]])}, torch.tensor([0]))["T"].item()
    assert big == 3.0  # delta_f tiny, alpha huge -> clipped to H


def test_selfmm_loss_weights_tanh():
    enc = TextEncoder(feature_dim=8)
    m = build_head("selfmm", audio_dim=3, vision_dim=None, text_encoder=enc)
    y = torch.tensor([1.0, -1.0])
    m.setup_train_set(torch.tensor([1.0, -1.0, 0.5]))
    m.ulgm.label("T")[:2] = torch.tensor([2.0, -1.0])
    preds = {"M": torch.zeros(2), "T": torch.zeros(2), "A": torch.zeros(2)}
    L = m.loss(preds, y, torch.tensor([0, 1]))
    assert L["M"].item() == pytest.approx(1.0)
    assert L["T"].item() == pytest.approx((math.tanh(1.0) * 2.0 + 0.0) / 2)  # w=tanh(|2-1|), w=0 for the second
    assert L["A"].item() == 0.0  # unimodal labels still equal y_m -> weight 0


# ---------------------------------------------------------------- DMD

def test_dmd_orthogonality_zero_for_orthogonal():
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    b = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, -1.0]])
    assert orthogonality_loss(a, b).item() == pytest.approx(0.0, abs=1e-7)
    assert orthogonality_loss(a, a).item() == pytest.approx(1.0, abs=1e-6)


def test_dmd_margin_loss():
    # two samples, two modalities; identical shared vectors per sample, orthogonal across samples
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    ids = torch.tensor([0, 1, 0, 1])
    y = torch.tensor([3.0, -3.0, 3.0, -3.0])
    # margin 0.15*6 = 0.9; cos_same = 1, cos_diff = 0 -> relu(0.9 - 1 + 0) = 0
    assert margin_loss(rows, ids, y, 0.15).item() == pytest.approx(0.0, abs=1e-7)
    # all rows equal -> relu(0.9 - 1 + 1) = 0.9
    assert margin_loss(torch.ones(4, 2), ids, y, 0.15).item() == pytest.approx(0.9, abs=1e-6)


@pytest.mark.parametrize("n_mod", [2, 3])
def test_gd_edge_weights_sum_to_one(n_mod):
    names = ["T", "A", "V"][:n_mod]
    gd = GDUnit(names, d=8, gd_size=4, dropout=0.0)
    out = gd({m: torch.randn(5, 8) for m in names})
    assert out["edge_weights"].shape == (5, n_mod * (n_mod - 1))
    assert torch.allclose(out["edge_weights"].sum(-1), torch.ones(5), atol=1e-6)
    assert out["loss"].item() >= 0


def test_dmd_reconstruction_shapes():
    cfg = DMDConfig(audio_dim=5, vision_dim=7, d=8, heads=2, cross_layers=1, memory_layers=1, kernel_vision=3)
    m = DMD(cfg, TextEncoder(feature_dim=16))
    text = {"features": torch.randn(2, 9, 16), "lengths": torch.tensor([9, 4])}
    out = m(text, torch.randn(2, 12, 5), torch.tensor([12, 2]), torch.randn(2, 6, 7), torch.tensor([6, 6]),
            labels=torch.tensor([1.0, -2.0]))
    # projected and reconstructed sequences: (B, d, T - k + 1) per modality
    for mod, T, k in (("T", 9, 5), ("A", 12, 5), ("V", 6, 3)):
        assert out.extras["recon"][mod].shape == (2, 8, T - k + 1) == out.extras["proj"][mod].shape
    assert set(out.losses) >= {"recon", "cycle", "orth", "margin", "gd_homo", "gd_hetero", "total"}
    assert out.extras["homo_edge_weights"].shape == (2, 6)


# ---------------------------------------------------------------- DeepMLF

@pytest.mark.parametrize("gate_init,expected", [(0.0, 0.5), (-4.0, 1 / (1 + math.exp(4.0)))])
def test_deepmlf_gates_and_frozen_lm(gate_init, expected):
    tok = _word_tokenizer()
    m = DeepMLF(DeepMLFConfig(audio_dim=5, num_fusion_tokens=3, fusion_layers=[0, 1], av_dim=8, av_heads=2,
                              av_layers=1, mm_heads=2, gate_init=gate_init, lm_weight=0.5), _tiny_gpt2(), tok)
    for g_attn, g_mlp in m.gates().values():
        assert g_attn == pytest.approx(expected) and g_mlp == pytest.approx(expected)
    text = m.batch_text(["the movie was good", "bad"])
    assert text["attention_mask"][1, 0] == 0  # left padding
    out = m(text, torch.randn(2, 10, 5), torch.tensor([10, 4]), labels=torch.tensor([1.0, -1.0]))
    assert "lm" in out.losses
    out.losses["total"].backward()
    lm_grads = [n for n, p in m.lm.named_parameters() if p.grad is not None]
    assert lm_grads == [] and all(not p.requires_grad for p in m.lm.parameters())
    assert m.fusion_tokens.grad is not None and m.fusion_tokens.grad.abs().sum() > 0
    for blk in m.mm.values():
        assert blk.gate_attn.grad is not None and blk.gate_mlp.grad is not None
    assert m.av.a_in.weight.grad is not None


def test_deepmlf_fusion_changes_only_fusion_positions_of_first_block():
    # with the hook removed (no context) the LM sees the plain sequence; with it, text positions before the first
    # fused layer are untouched by AV input only through the FFN path: changing audio must not change the text
    # last-token state when the MM blocks' MLP gate is zero... check the simpler invariant: audio changes the output
    tok = _word_tokenizer()
    m = DeepMLF(DeepMLFConfig(audio_dim=5, num_fusion_tokens=2, fusion_layers=[0], av_dim=8, av_heads=2,
                              av_layers=1, mm_heads=2), _tiny_gpt2(), tok).eval()
    text = m.batch_text(["the movie was good", "not bad"])
    a = torch.randn(2, 6, 5)
    p1 = m(text, a, torch.tensor([6, 6])).pred
    p2 = m(text, a + 1.0, torch.tensor([6, 6])).pred
    assert not torch.allclose(p1, p2)


# ---------------------------------------------------------------- every head on an MMSA pickle

@pytest.mark.parametrize("use_vision", [True, False])
@pytest.mark.parametrize("head", ["text", "selfmm", "dmd", "deepmlf"])
def test_heads_on_mmsa_pickle(tmp_path, monkeypatch, head, use_vision):
    path = _write_pickle(tmp_path / "aligned_50.pkl")
    splits = load_mmsa_splits(path, use_vision=use_vision)
    tr = splits["train"]
    vdim = 7 if use_vision else None
    if head == "deepmlf":
        model = build_head("deepmlf", 5, vdim, decoder=(_word_tokenizer(), _tiny_gpt2()),
                           head_args={"num_fusion_tokens": 2, "fusion_layers": [1], "av_dim": 8, "av_heads": 2,
                                      "av_layers": 1, "mm_heads": 2})
    else:
        enc = TextEncoder(_tiny_bert(), _word_tokenizer()) if head != "dmd" else TextEncoder(feature_dim=32)
        args = {"d": 8, "heads": 2, "cross_layers": 1, "memory_layers": 1} if head == "dmd" else {}
        model = build_head(head, 5, vdim, text_encoder=enc, head_args=args)
    b = tr.batch([0, 1, 2, 3])
    assert (b["vision"] is not None) == use_vision
    text = model.batch_text(b["raw_text"], b["text_features"])
    out = model(text, b["audio"], b["audio_lens"], b["vision"] if model.uses_vision else None,
                b["vision_lens"] if model.uses_vision else None, labels=b["labels"], index=b["index"])
    assert out.pred.shape == (4,) and torch.isfinite(out.losses["total"])
    out.losses["total"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
    # a short end-to-end training (2 epochs, so Self-MM's ULGM updates once) with test metrics
    if not use_vision:
        return
    moved = []
    if head == "selfmm":  # record whether ULGM moved the unimodal labels (the best-epoch restore may rewind them)
        hook = model.on_train_batch_end

        def spy(out, labels, index, epoch):
            hook(out, labels, index, epoch)
            moved.append(not torch.equal(model.ulgm.label("A"), model.ulgm.label("M")))
        model.on_train_batch_end = spy
    cosine = head == "text"  # one head exercises the warm-up + cosine schedule
    cfg = FusionConfig(head=head, epochs=2, batch_size=6, patience=5,
                       lr_schedule="cosine" if cosine else "constant", warmup_ratio=0.25)
    made = []
    if cosine:
        from audiorep.train import trainer as trainer_mod
        from audiorep.train.optim import warmup_steps

        real = trainer_mod.build_scheduler

        def record(opt, total, optim):
            made.append((warmup_steps(total, optim.warmup_ratio, optim.schedule), total, real(opt, total, optim)))
            return made[-1][2]
        monkeypatch.setattr(trainer_mod, "build_scheduler", record)
    res = train_one(model, splits, cfg, seed=0)
    assert set(res["test"]) >= {"MAE", "Corr", "Has0_acc_2", "Mult_acc_7"} and res["epochs_run"] == 2
    if head == "text":  # the text-only head never reads audio: the swapped-audio control must not move it
        assert res["test_audio_swapped"] == res["test"]
    else:
        assert set(res["test_audio_swapped"]) == set(res["test"])
    if cosine:  # stepped once per batch over exactly epochs x batches, rates decayed to 0 at the end
        warmup, total, sched = made[0]
        per_epoch = -(-len(tr) // 6) - (1 if len(tr) % 6 == 1 else 0)
        assert total == 2 * per_epoch and warmup == int(0.25 * total) and sched.last_epoch == total
        assert all(lr == pytest.approx(0.0, abs=1e-12) for lr in sched.get_last_lr())
    if head == "selfmm":
        assert moved[:2] == [False, False] and moved[-1]  # epoch 1 keeps y_m, epoch 2 updates


def test_vision_required_when_built_with_it():
    m = build_head("selfmm", 5, 7, text_encoder=TextEncoder(feature_dim=8))
    with pytest.raises(ValueError, match="vision"):
        m({"features": torch.randn(2, 3, 8), "lengths": torch.tensor([3, 3])}, torch.randn(2, 4, 5),
          torch.tensor([4, 4]))


# ---------------------------------------------------------------- config, table, TEASEL import

def test_config_and_table(tmp_path):
    import json

    from audiorep.multimodal import load_fusion_config
    from audiorep.multimodal.table import collect_teasel, table
    from audiorep.errors import ConfigError

    cfg = load_fusion_config(None, ["head=dmd", "head_args.d=16", "seeds=[3, 4]"])
    assert cfg.head == "dmd" and cfg.head_args == {"d": 16} and cfg.seeds == [3, 4]
    with pytest.raises(ConfigError, match=r"override nope: unknown key 'nope' in the top level"):
        load_fusion_config(None, ["nope=1"])
    # YAML 1.1 reads 5e-4 as a string: it must arrive as a float, and a non-number must fail by name
    assert load_fusion_config(None, ["text_lr=5e-4"]).text_lr == 5e-4
    with pytest.raises(ConfigError, match="lr: expected float, got 'fast'"):
        load_fusion_config(None, ["lr=fast"])
    assert load_fusion_config(None, ["select_metric=Corr"]).select_metric == "Corr"
    with pytest.raises(ConfigError, match="select_metric must be one of"):
        load_fusion_config(None, ["select_metric=Acc"])
    with pytest.raises(ConfigError, match="head must be"):
        load_fusion_config(None, ["head=misa"])
    with pytest.raises(ConfigError, match="lr_schedule must be"):
        load_fusion_config(None, ["lr_schedule=linear"])
    with pytest.raises(ConfigError, match="warmup_ratio must lie"):
        load_fusion_config(None, ["warmup_ratio=1.5"])
    with pytest.raises(ConfigError, match="unknown DMDConfig"):
        build_head("dmd", 5, None, TextEncoder(feature_dim=8), head_args={"width": 3})
    m = {"MAE": 1.0, "Corr": 0.5, "Has0_acc_2": 0.6, "Non0_acc_2": 0.7, "Has0_F1": 0.6, "Non0_F1": 0.7,
         "Mult_acc_7": 0.2}
    for i, mae in enumerate((1.0, 1.2)):
        d = tmp_path / f"t{i}"
        d.mkdir()
        (d / "finetune_results.json").write_text(json.dumps({"test": {**m, "MAE": mae}, "use_audio": True,
                                                              "config": {"seed": i}}))
    res = collect_teasel(str(tmp_path / "out" / "teasel.json") if (tmp_path / "out").mkdir() is None else "",
                         [str(tmp_path / "t0"), str(tmp_path / "t1")])
    assert res["head"] == "teasel" and res["summary"]["MAE"][0] == pytest.approx(1.1)
    assert res["summary"]["MAE"][1] == pytest.approx(np.std([1.0, 1.2], ddof=1))
    md = table(str(tmp_path / "out"))
    assert "| teasel | 2 | 1.100 ± 0.141 | 0.500 ± 0.000 | 60.0 ± 0.0" in md


def test_merge_results(tmp_path):
    import json

    from audiorep.multimodal.fusion_run import merge_results, write_results
    from audiorep.errors import ConfigError

    m = {"MAE": 1.0, "Corr": 0.1}
    write_results(str(tmp_path / "a"), "dmd", [{"seed": 1, "test": {**m, "MAE": 2.0}}])
    write_results(str(tmp_path / "b"), "dmd", [{"seed": 0, "test": m}])
    res = merge_results(str(tmp_path), [str(tmp_path / "a" / "dmd.json"), str(tmp_path / "b" / "dmd.json")])
    assert [r["seed"] for r in res["runs"]] == [0, 1] and res["summary"]["MAE"][0] == 1.5
    assert json.loads((tmp_path / "dmd.json").read_text())["summary"]["MAE"][0] == 1.5
    with pytest.raises(ConfigError, match="repeated"):
        merge_results(str(tmp_path), [str(tmp_path / "b" / "dmd.json")] * 2)


def test_with_audio_swapped_moves_only_the_audio():
    from audiorep.multimodal.data import FusionSplit
    from audiorep.multimodal.metrics import derangement

    split = FusionSplit(raw_text=[f"t{i}" for i in range(6)], labels=torch.arange(6.0),
                        audio=[torch.full((i + 1, 2), float(i)) for i in range(6)])
    sw = split.with_audio_swapped(seed=1)
    assert sw.raw_text == split.raw_text and torch.equal(sw.labels, split.labels)
    src = derangement(6, seed=1)
    assert all(src[i] != i and int(sw.audio[i][0, 0]) == src[i] for i in range(6))
    assert sorted(src) == list(range(6)) and int(split.audio[0][0, 0]) == 0  # a permutation; the original kept
    b = sw.batch([0, 1])
    assert b["audio_lens"].tolist() == [src[0] + 1, src[1] + 1]
