"""Fusion heads: ULGM by hand, every DMD and DeepMLF loss term against hand-computed values, DeepMLF gates and
freezing, every head on an MMSA pickle."""

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


def _margin_by_loops(feats, labels, scale):
    """The published hinge loss written out with plain loops (independent of margin_loss's tensor algebra)."""
    R = len(labels)
    cos = [[float(np.dot(feats[i], feats[j]) / math.sqrt((np.dot(feats[i], feats[i]) + 1e-8)
                                                         * (np.dot(feats[j], feats[j]) + 1e-8)))
            for j in range(R)] for i in range(R)]
    per_anchor = []
    for i in range(R):
        pos = [j for j in range(R) if j != i and labels[j] == labels[i]]
        neg = [k for k in range(R) if labels[k] != labels[i]]
        if pos and neg:
            terms = [max(0.0, scale * abs(labels[i] - labels[k]) - cos[i][j] + cos[i][k]) for j in pos for k in neg]
            per_anchor.append(sum(terms) / len(terms))
    return sum(per_anchor) / len(per_anchor) if per_anchor else 0.0


def test_dmd_margin_loss_tied_labels_are_positives():
    # three rows from three different samples; samples 0 and 1 share the label 1.0, so each is the other's positive
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([1.0, 1.0, -1.0])
    # margin to the negative = 0.15 * 2 = 0.3; cos(0,1) = 0, cos(0,2) = 1, cos(1,2) = 0
    # anchor 0: relu(0.3 - 0 + 1) = 1.3; anchor 1: relu(0.3 - 0 + 0) = 0.3; anchor 2 has no positive -> skipped
    assert margin_loss(rows, y, 0.15).item() == pytest.approx((1.3 + 0.3) / 2, abs=1e-6)
    # "positive = same sample" would give no positive at all here, i.e. a loss of 0
    # two modalities x two samples, orthogonal across samples: margin 0.9, relu(0.9 - 1 + 0) = 0
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([3.0, -3.0, 3.0, -3.0])
    assert margin_loss(rows, y, 0.15).item() == pytest.approx(0.0, abs=1e-6)
    assert margin_loss(torch.ones(4, 2), y, 0.15).item() == pytest.approx(0.9, abs=1e-6)  # relu(0.9 - 1 + 1)
    assert margin_loss(torch.ones(3, 2), torch.zeros(3), 0.15).item() == 0.0  # no negatives anywhere
    with pytest.raises(ValueError, match="labels has 2 values for 3 rows"):
        margin_loss(torch.ones(3, 2), torch.zeros(2), 0.15)


def test_dmd_margin_loss_matches_loops_with_ties():
    # labels on MOSI's 1/3 grid, many ties, anchors with different numbers of triplets (per-anchor mean matters)
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(12, 4, generator=g)
    y = torch.tensor([1, 1, 1, -2, -2, 0, 0, 0, 0, 2, 1, -2], dtype=torch.float32) / 3
    want = _margin_by_loops(feats.numpy().astype(np.float64), y.tolist(), 0.15)
    assert margin_loss(feats, y, 0.15).item() == pytest.approx(want, rel=1e-5)


def test_gd_edge_prior_published_values():
    from audiorep.multimodal.heads.dmd import edge_prior

    names = ["T", "A", "V"]
    gd = GDUnit(names, d=4, gd_size=2, dropout=0.0)
    edges = [(names[s], names[t]) for s, t in gd.edges]  # (teacher, student)
    assert edges == [("A", "T"), ("V", "T"), ("T", "A"), ("V", "A"), ("T", "V"), ("A", "V")]
    e4 = math.exp(4.0)  # a favoured edge's logit 1 / temperature 0.25
    homo = edge_prior(edges, ["T->A", "T->V"], 0.25)  # published softmax([0,0,1,0,1,0] / 0.25)
    assert homo.tolist() == pytest.approx([1 / (2 * e4 + 4)] * 2 + [e4 / (2 * e4 + 4), 1 / (2 * e4 + 4),
                                                                     e4 / (2 * e4 + 4), 1 / (2 * e4 + 4)])
    assert homo[2].item() == pytest.approx(0.48233, abs=1e-5) and homo[0].item() == pytest.approx(0.008834, abs=1e-6)
    # published hetero softmax([0,0,1,0,1,1] / 0.25): its sixth edge is vision -> audio, our fourth
    hetero = edge_prior(edges, ["T->A", "T->V", "V->A"], 0.25)
    f, o = e4 / (3 * e4 + 3), 1 / (3 * e4 + 3)
    assert hetero.tolist() == pytest.approx([o, o, f, f, f, o])
    # without vision the prior is the softmax over the two edges left
    assert edge_prior([("A", "T"), ("T", "A")], ["T->A", "T->V"], 0.25).tolist() == pytest.approx(
        [1 / (1 + e4), e4 / (1 + e4)])
    cfg = DMDConfig()
    assert cfg.homo_prior == ["T->A", "T->V"] and cfg.hetero_prior == ["T->A", "T->V", "V->A"]
    assert (cfg.gd_temperature, cfg.gd_prior_temperature, cfg.gd_reg, cfg.gd_logit_weight, cfg.gd_repr_weight) == (
        8.0, 0.25, 10.0, 1.0, 10.0)
    from audiorep.errors import ConfigError

    with pytest.raises(ConfigError, match="DMDConfig.homo_prior: 'TA' is not"):
        DMDConfig(homo_prior=["TA"])
    with pytest.raises(ConfigError, match="DMDConfig.gd_temperature must be > 0"):
        DMDConfig(gd_temperature=0.0)


def _hand_set_gd(gd: GDUnit) -> GDUnit:
    """Node heads reduced to logit = x[:, 0] (hidden = 0, r = x); edge score = logit_student - logit_teacher."""
    with torch.no_grad():
        for p in gd.parameters():
            p.zero_()
        for h in gd.heads.values():
            h["out"].weight[0, 0] = 1.0
        gd.w_logit.weight.fill_(1.0)  # z = [logit, 0]
        gd.w_edge.weight[0, 0], gd.w_edge.weight[0, 2] = 1.0, -1.0  # [z_student; z_teacher] -> l_s - l_t
    return gd


def test_gd_edge_softmax_uses_the_published_temperature():
    gd = _hand_set_gd(GDUnit(["T", "A"], d=2, gd_size=1, dropout=0.0, prior=["T->A"]))
    assert gd.temperature == 8.0  # the published alpha = 1/8
    # logits T = 0, A = 4 ln 3; edges (A->T): score -4 ln 3, (T->A): +4 ln 3
    # softmax([-4 ln 3, 4 ln 3] / 8) = [1, 3] / 4; at temperature 1 it would be [1, 6561] / 6562
    out = gd({"T": torch.tensor([[0.0, 5.0]]), "A": torch.tensor([[4 * math.log(3), -1.0]])})
    assert out["edge_scores"][0].tolist() == pytest.approx([-4 * math.log(3), 4 * math.log(3)], rel=1e-6)
    assert out["edge_weights"][0].tolist() == pytest.approx([0.25, 0.75], rel=1e-6)
    assert gd.edge_weights(torch.tensor([[0.0, 8.0]])).tolist()[0] == pytest.approx(
        [1 / (1 + math.e), math.e / (1 + math.e)])
    # distillation weight = edge weight + prior (prior [1, e^4] / (1 + e^4)); both edges are 4 ln 3 apart
    e4 = math.exp(4.0)
    prior = [1 / (1 + e4), e4 / (1 + e4)]
    d = 4 * math.log(3)
    assert out["logit"].item() == pytest.approx((0.25 + prior[0]) * d + (0.75 + prior[1]) * d, rel=1e-5)
    assert out["reg"].item() == pytest.approx(10 * ((0.25 - prior[0]) ** 2 + (0.75 - prior[1]) ** 2), rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["logit"].item() + out["reg"].item(), rel=1e-6)


def test_gd_loss_terms_by_hand():
    # three modalities, one sample: logits T 1, A 0, V 3; uniform edge weights 1/6; the published homo prior
    gd = GDUnit(["T", "A", "V"], d=2, gd_size=1, dropout=0.0, prior=["T->A", "T->V"], repr_weight=10.0)
    logits = torch.tensor([[1.0, 0.0, 3.0]])
    reprs = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # T, A, V
    L = gd.losses(logits, reprs, torch.full((1, 6), 1 / 6))
    e4 = math.exp(4.0)
    pf, po = e4 / (2 * e4 + 4), 1 / (2 * e4 + 4)  # favoured edges T->A (index 2) and T->V (index 4)
    # |student - teacher| per edge A->T, V->T, T->A, V->A, T->V, A->V = 1, 2, 1, 3, 2, 3
    assert L["logit"].item() == pytest.approx(sum((1 / 6 + p) * dd for p, dd in zip(
        [po, po, pf, po, pf, po], [1, 2, 1, 3, 2, 3])), rel=1e-6)
    assert L["logit"].item() == pytest.approx(2 + 3 * pf + 9 * po, rel=1e-6)
    assert L["reg"].item() == pytest.approx(10 * (2 * (1 / 6 - pf) ** 2 + 4 * (1 / 6 - po) ** 2), rel=1e-6)
    # max(0, cos(student, teacher)): T.A = 0, every pair with V = 1/sqrt 2 (edges V->T, V->A, T->V, A->V)
    assert L["repr"].item() == pytest.approx(10 / math.sqrt(2) * (4 / 6 + pf + 3 * po), rel=1e-5)
    assert L["loss"].item() == pytest.approx(L["logit"].item() + L["repr"].item() + L["reg"].item(), rel=1e-6)
    # teachers are targets: no gradient reaches a logit through its teacher role
    lg = logits.clone().requires_grad_(True)
    gd.losses(lg, reprs, torch.full((1, 6), 1 / 6))["logit"].backward()
    # d/d logit_T = sum over edges where T is the student of w * sign(T - teacher): (A->T) +, (V->T) -
    assert lg.grad[0, 0].item() == pytest.approx((1 / 6 + po) - (1 / 6 + po), abs=1e-7)
    assert lg.grad[0, 1].item() == pytest.approx(-(1 / 6 + pf) - (1 / 6 + po), rel=1e-6)  # A below T and V


def test_gd_homogeneous_reads_relu_projection():
    gd = GDUnit(["T", "A"], d=2, gd_size=1, dropout=0.0, repr_source="hidden")
    with torch.no_grad():
        for h in gd.heads.values():
            h["fc1"].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
            h["fc1"].bias.zero_()
    x = torch.tensor([[2.0, 3.0]])
    out = gd({"T": x, "A": -x})
    assert out["reprs"][0].tolist() == [[2.0, 0.0], [0.0, 3.0]]  # ReLU([2, -3]), ReLU([-2, 3])
    assert GDUnit(["T", "A"], d=2, gd_size=1, dropout=0.0).repr_source == "residual"


@pytest.mark.parametrize("n_mod", [2, 3])
def test_gd_edge_weights_sum_to_one(n_mod):
    names = ["T", "A", "V"][:n_mod]
    gd = GDUnit(names, d=8, gd_size=4, dropout=0.0)
    out = gd({m: torch.randn(5, 8) for m in names})
    assert torch.allclose(gd.prior.sum(), torch.tensor(1.0))
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


def _small_dmd(**kw):
    cfg = DMDConfig(audio_dim=5, d=8, heads=2, cross_layers=1, memory_layers=1, shared_layers=1, kernel_text=3,
                    kernel_audio=3, dropout=0.0, output_dropout=0.0, text_dropout=0.0, **kw)
    torch.manual_seed(0)
    m = DMD(cfg, TextEncoder(feature_dim=6))
    text = {"features": torch.randn(3, 7, 6), "lengths": torch.tensor([7, 5, 4])}
    return m, (text, torch.randn(3, 9, 5), torch.tensor([9, 6, 3]))


def test_dmd_total_is_the_published_sum():
    m, args = _small_dmd()
    y = torch.tensor([1.0, -1.0, 1.0])
    out = m(*args, labels=y)
    L = out.losses
    # the shared head is one more task term, and its loss is the L1 of its own prediction
    assert L["task_shared"].item() == pytest.approx((out.extras["shared_pred"] - y).abs().mean().item(), rel=1e-6)
    want = (L["task"] + L["task_shared"] + L["task_homo"] + L["task_hetero"] + 0.05 * L["gd_homo"]
            + 0.05 * L["gd_hetero"] + 0.1 * (L["recon"] + L["cycle"] + 0.1 * (L["margin"] + L["orth"])))
    assert L["total"].item() == pytest.approx(want.item(), rel=1e-6)
    # homogeneous unit: logit + regulariser only; heterogeneous: + the representation term
    assert (m.homo.repr_weight, m.hetero.repr_weight) == (0.0, 10.0) and L["gd_homo_repr"].item() == 0.0
    assert L["gd_homo"].item() == pytest.approx(L["gd_homo_logit"].item() + L["gd_homo_reg"].item(), rel=1e-6)
    assert L["gd_hetero"].item() == pytest.approx(
        L["gd_hetero_logit"].item() + L["gd_hetero_repr"].item() + L["gd_hetero_reg"].item(), rel=1e-6)
    assert m.homo.repr_source == "hidden" and m.hetero.repr_source == "residual"
    # no vision: the prior over the two edges (A->T, T->A) favours text as the teacher
    assert out.extras["homo_prior"].tolist() == pytest.approx([1 / (1 + math.exp(4)), 1 - 1 / (1 + math.exp(4))])
    out.losses["total"].backward()
    assert m.shared_out.weight.grad.abs().sum() > 0  # the shared head trains with the task loss


def test_dmd_reconstruction_targets_are_not_detached():
    # with the decoders at zero the reconstruction is 0, so recon = mean(proj^2) and cycle = mean(private^2):
    # the gradient to the projection / private encoder can only come through the (undetached) target
    m, args = _small_dmd()
    with torch.no_grad():
        for dec in m.decoder.values():
            dec.weight.zero_()
    L = m(*args, labels=torch.tensor([1.0, -1.0, 0.5])).losses
    g_proj = torch.autograd.grad(L["recon"], m.proj["A"].weight, retain_graph=True)[0]
    g_priv = torch.autograd.grad(L["cycle"], m.private["A"].weight)[0]
    assert g_proj.abs().sum() > 0 and g_priv.abs().sum() > 0


def test_dmd_presets():
    from audiorep.multimodal.heads.dmd import dmd_mosei, dmd_mosi

    mosi, mosei = dmd_mosi(), dmd_mosei(dropout=0.2)
    assert (mosi.audio_dim, mosi.vision_dim, mosi.d, mosi.heads) == (5, 20, 50, 10)
    assert (mosi.kernel_text, mosi.kernel_audio, mosi.kernel_vision, mosi.text_dropout) == (5, 5, 5, 0.5)
    assert (mosei.audio_dim, mosei.vision_dim, mosei.d, mosei.heads) == (74, 35, 30, 6)
    assert (mosei.kernel_text, mosei.kernel_audio, mosei.kernel_vision, mosei.text_dropout) == (5, 1, 3, 0.3)
    assert mosei.dropout == 0.2 and mosei.gd_temperature == mosi.gd_temperature == 8.0
    from audiorep.errors import ConfigError

    with pytest.raises(ConfigError, match=r"heads \(7\) must divide d \(8\)"):
        DMD(DMDConfig(d=8, heads=7), TextEncoder(feature_dim=4))


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


def test_deepmlf_aux_loss_per_token():
    from audiorep.multimodal.heads.deepmlf import aux_token_loss

    # two tokens predicting +1 and -1 for a label of 0: each is 1 off (published loss 1); their mean is exact (0)
    assert aux_token_loss(torch.tensor([[1.0, -1.0]]), torch.tensor([0.0])).item() == pytest.approx(1.0)
    # mean over tokens and batch: |2-1|, |0-1|, |1-(-2)|, |4-(-2)| -> (1 + 1 + 3 + 6) / 4
    assert aux_token_loss(torch.tensor([[2.0, 0.0], [1.0, 4.0]]), torch.tensor([1.0, -2.0])).item() == 2.75
    with pytest.raises(ValueError, match="aux_token_loss: token_preds must be"):
        aux_token_loss(torch.zeros(3), torch.zeros(3))


def test_deepmlf_loss_weights_and_lm_targets():
    from audiorep.multimodal.heads.deepmlf import next_token_targets

    # left padding: pads predict nothing, the last real token predicts end-of-text (eos 3)
    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    am = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert next_token_targets(ids, am, 3).tolist() == [[-100, -100, 6, 7, 3], [9, 10, 11, 12, 3]]
    tok = _word_tokenizer()
    cfg = DeepMLFConfig(audio_dim=5, num_fusion_tokens=3, fusion_layers=[1], av_dim=8, av_heads=2, av_layers=1,
                        mm_heads=2, aux_fusion_weight=0.4, aux_text_weight=0.8, aux_av_weight=0.7, lm_weight=0.5)
    m = DeepMLF(cfg, _tiny_gpt2(), tok).eval()
    text = m.batch_text(["the movie was good", "bad"])
    y = torch.tensor([1.0, -2.0])
    seen = []
    m.lm.lm_head.register_forward_hook(lambda mod, inp, outp: seen.append(outp.detach()))
    out = m(text, torch.randn(2, 6, 5), torch.tensor([6, 3]), labels=y)
    aux, L = out.extras["aux"], out.losses
    assert aux["F"].shape == (2, 3)  # one prediction per fusion token
    assert L["aux_fusion"].item() == pytest.approx((aux["F"] - y[:, None]).abs().mean().item(), rel=1e-6)
    assert L["aux_text"].item() == pytest.approx((aux["T"] - y).abs().mean().item(), rel=1e-6)
    want = L["task"] + 0.4 * L["aux_fusion"] + 0.8 * L["aux_text"] + 0.7 * L["aux_av"] + 0.5 * L["lm"]
    assert L["total"].item() == pytest.approx(want.item(), rel=1e-6)
    # the LM loss: mean cross-entropy over every real text position ([CLS] + words) of the token after it; the
    # last real token's "next" is end-of-text
    ids, am = text["input_ids"].tolist(), text["attention_mask"].tolist()
    logp = torch.log_softmax(seen[0].float(), -1)  # (B, L, V)
    terms = [-logp[b, p, ids[b][p + 1] if p + 1 < len(ids[b]) else tok.eos_token_id].item()
             for b in range(2) for p in range(len(ids[b])) if am[b][p]]
    assert len(terms) == 5 + 2 and L["lm"].item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_deepmlf_frozen_lm_dropout_follows_the_config():
    tok = _word_tokenizer()
    base = dict(audio_dim=5, num_fusion_tokens=2, fusion_layers=[0], av_dim=8, av_heads=2, av_layers=1, mm_heads=2)
    on = DeepMLF(DeepMLFConfig(**base), _tiny_gpt2(), tok).train()
    assert on.lm.training and any(isinstance(x, torch.nn.Dropout) and x.training for x in on.lm.modules())
    assert not on.eval().lm.training
    off = DeepMLF(DeepMLFConfig(**base, lm_dropout=False), _tiny_gpt2(), tok).train()
    assert not off.lm.training and off.av.training


def test_deepmlf_presets():
    from audiorep.multimodal.heads.deepmlf import deepmlf_mosei, deepmlf_mosi

    mosei, mosi = deepmlf_mosei(), deepmlf_mosi(num_fusion_tokens=20)
    assert (mosei.num_fusion_tokens, mosei.fusion_layers, mosei.lm_weight) == (12, [3, 5, 7, 8, 9, 10, 11], 1.1)
    assert (mosei.aux_fusion_weight, mosei.aux_text_weight, mosei.aux_av_weight) == (1.0, 1.0, 1.0)
    assert (mosei.av_dim, mosei.av_heads, mosei.av_layers, mosei.audio_dim, mosei.vision_dim) == (30, 6, 3, 74, 35)
    assert (mosi.aux_fusion_weight, mosi.aux_text_weight, mosi.aux_av_weight, mosi.lm_weight) == (0.4, 0.8, 0.8, 0.0)
    assert (mosi.num_fusion_tokens, mosi.audio_dim, mosi.vision_dim) == (20, 5, 20)


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
        args = {"d": 8, "heads": 2, "cross_layers": 1, "memory_layers": 1, "shared_layers": 1} if head == "dmd" else {}
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
    from audiorep.scoring import derangement

    split = FusionSplit(raw_text=[f"t{i}" for i in range(6)], labels=torch.arange(6.0),
                        audio=[torch.full((i + 1, 2), float(i)) for i in range(6)])
    sw = split.with_audio_swapped(seed=1)
    assert sw.raw_text == split.raw_text and torch.equal(sw.labels, split.labels)
    src = derangement(6, seed=1)
    assert all(src[i] != i and int(sw.audio[i][0, 0]) == src[i] for i in range(6))
    assert sorted(src) == list(range(6)) and int(split.audio[0][0, 0]) == 0  # a permutation; the original kept
    b = sw.batch([0, 1])
    assert b["audio_lens"].tolist() == [src[0] + 1, src[1] + 1]


def test_table_of_a_missing_or_empty_folder_is_an_error(tmp_path):
    from audiorep.errors import ConfigError
    from audiorep.multimodal.table import table

    with pytest.raises(ConfigError, match="nope: no such results folder"):
        table(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="no result JSONs with a summary"):
        table(str(tmp_path))


def test_max_utts_is_the_probes_seeded_subset():
    """max_utts means one thing in both runners: the seeded random subset the probe draws, not the first N."""
    from audiorep.data import get_corpus
    from audiorep.data.manifest import seeded_subset
    from audiorep.multimodal.data import corpus_splits

    utts = get_corpus("synth").manifest("dev")
    probe = seeded_subset(utts, 6, seed=0)  # what run_downstream(max_utts=6, seed=0) trains on
    assert [u.id for u in probe] != [u.id for u in utts[:6]]
    splits, _ = corpus_splits("synth", ["dev"], "logmel", max_utts=6)
    assert splits["dev"].raw_text == [u.text for u in probe]
    assert seeded_subset(utts, None) is utts and seeded_subset(utts, len(utts) + 1) is utts
