"""TEASEL model: prefix placement, masks, padding invariance, gradients in pretraining, freezing, masking, I/O."""

from __future__ import annotations

import pytest
import torch

from audiorep.errors import CheckpointError, ConfigError
from audiorep.models.wav2vec2 import Wav2Vec2CNNFrontEnd
from audiorep.multimodal.teasel import (
    IGNORE_INDEX,
    LAA,
    LAAConfig,
    TeaselModel,
    UpstreamFrontEnd,
    count_parameters,
    load_laa,
    mask_tokens,
    mlm_loss,
    save_laa,
)

PAD, BOS, EOS, MASK = 1, 0, 2, 4
SPECIALS = (0, 1, 2, 3, 4)


def tiny_lm(vocab=60):
    from transformers import RobertaConfig, RobertaForMaskedLM

    rc = RobertaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, max_position_embeddings=40, pad_token_id=PAD, bos_token_id=BOS,
                       eos_token_id=EOS, type_vocab_size=1)
    return RobertaForMaskedLM(rc).eval()


def tiny_w2v():
    from transformers import Wav2Vec2Config

    wc = Wav2Vec2Config(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2),
                        num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    return Wav2Vec2CNNFrontEnd(wc)


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    mlm = tiny_lm()
    fe = tiny_w2v()
    model = TeaselModel(mlm.roberta, fe, LAAConfig(), lm_head=mlm.lm_head, regression=True).eval()
    return model, fe


def text_batch():
    ids = torch.tensor([[BOS, 10, 11, 12, 13, EOS], [BOS, 20, 21, EOS, PAD, PAD]])
    return ids, (ids != PAD).long()


def speech_batch(fe):
    g = torch.Generator().manual_seed(1)
    wavs = [torch.randn(1600, generator=g), torch.randn(900, generator=g)]
    return fe.frozen_features(wavs)


def test_default_laa_size_matches_paper():
    assert count_parameters(LAA(LAAConfig())) == 18_307_585  # ~18.31 M
    # with its own LayerNorm + Linear input projection (e.g. on a 512-d CNN output)
    assert count_parameters(LAA(LAAConfig(input_dim=512))) == 18_307_585 + 2 * 512 + 512 * 768 + 768


def test_prefix_sits_at_positions_1_2_and_text_positions_do_not_shift(parts):
    model, fe = parts
    ids, am = text_batch()
    prefix = torch.randn(2, 2, 32)
    x, mask = model.embed(ids, am, prefix)
    text_only = model.roberta.embeddings(input_ids=ids)  # positions computed from the text alone
    assert x.shape == (2, 8, 32) and mask.shape == (2, 8)
    assert torch.equal(x[:, 1:3], prefix)
    assert torch.equal(x[:, :1], text_only[:, :1]) and torch.equal(x[:, 3:], text_only[:, 1:])
    assert mask[:, 1:3].eq(1).all()
    assert mask.tolist() == [[1] * 8, [1, 1, 1, 1, 1, 1, 0, 0]]


def test_prefix_changes_text_states_and_padding_does_not(parts):
    model, fe = parts
    ids, am = text_batch()
    raw, fl = speech_batch(fe)
    with torch.no_grad():
        out = model(ids, am, raw, fl)
        alone = model(ids[1:, :4], am[1:, :4], raw[1:, : int(fl[1])], fl[1:])
        no_prefix, _ = model.encode(ids, am, None)
    # utterance 2 padded in a batch (text and audio) == utterance 2 alone
    torch.testing.assert_close(out.hidden[1, :6], alone.hidden[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.prediction[1], alone.prediction[0], atol=1e-5, rtol=1e-5)
    # the speech prefix is attended to: text states differ from the text-only pass
    assert (out.hidden[:, 3:] - no_prefix[:, 1:]).abs().max() > 1e-3


def test_padding_frames_get_zero_weight_and_backward_gru_ignores_padding():
    torch.manual_seed(0)
    laa = LAA(LAAConfig(input_dim=8, hidden_size=16)).eval()
    feats = torch.randn(3, 12, 8)
    lens = torch.tensor([12, 5, 1])
    out = laa(feats, lens)
    assert out.prefix.shape == (3, 2, 16)
    for i, n in enumerate(lens.tolist()):
        assert out.weights[i, :, n:].eq(0).all()
        torch.testing.assert_close(out.weights[i].sum(-1), torch.ones(2))
    # garbage in the padding changes nothing (packing keeps it out of the backward direction too)
    noisy = feats.clone()
    noisy[1, 5:] = 100.0
    noisy[2, 1:] = -50.0
    out2 = laa(noisy, lens)
    torch.testing.assert_close(out.prefix, out2.prefix)
    alone = laa(feats[1:2, :5], lens[1:2])
    torch.testing.assert_close(out.prefix[1], alone.prefix[0], atol=1e-6, rtol=1e-5)


def test_w2v_front_end_is_padding_invariant_and_handles_short_audio():
    fe = tiny_w2v()
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(2000, generator=g), torch.randn(700, generator=g)
    raw, lens = fe.frozen_features([a, b])
    solo, solo_len = fe.frozen_features([b])
    assert int(lens[1]) == int(solo_len[0])
    torch.testing.assert_close(raw[1, : lens[1]], solo[0], atol=1e-5, rtol=1e-4)
    assert raw[1, lens[1]:].eq(0).all()
    tiny, tl = fe.frozen_features([torch.randn(3)])  # below the receptive field: padded, one frame
    assert int(tl[0]) == 1 and tiny.shape == (1, 1, 24)
    assert all(not p.requires_grad for p in fe.parameters())


def test_pretraining_gradients_only_reach_laa():
    torch.manual_seed(0)
    mlm = tiny_lm()
    fe = tiny_w2v()
    model = TeaselModel(mlm.roberta, fe, LAAConfig(input_projection=True), lm_head=mlm.lm_head)
    model.set_trainable(["input_proj", "gru", "aggregation", "prefix_norm", "front_end"])
    ids, am = text_batch()
    raw, fl = speech_batch(fe)
    masked, labels = mask_tokens(ids, am, SPECIALS, MASK, 60, 0.5, torch.Generator().manual_seed(0))
    model(masked, am, raw, fl, mlm_labels=labels).loss.backward()
    for name, p in list(model.roberta.named_parameters()) + list(model.lm_head.named_parameters()) \
            + list(fe.named_parameters()):
        assert p.grad is None, name
    for name, p in model.laa.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_upstream_front_end_layer_weights_train_upstream_does_not(tiny_model):
    import audiorep

    torch.manual_seed(0)
    up = tiny_model(share_layers=True)
    fe = UpstreamFrontEnd(up, layer=None)
    mlm = tiny_lm()
    model = TeaselModel(mlm.roberta, fe, None, lm_head=mlm.lm_head)
    model.set_trainable(["gru", "aggregation", "prefix_norm", "front_end"])
    raw, fl = fe.frozen_features([torch.randn(3200), torch.randn(2000)])
    assert raw.shape[:2] == (2, 3)  # all 3 hidden states stacked for the weighted sum
    ids, am = text_batch()
    masked, labels = mask_tokens(ids, am, SPECIALS, MASK, 60, 0.5, torch.Generator().manual_seed(0))
    model(masked, am, raw, fl, mlm_labels=labels).loss.backward()
    assert fe.layer_weights.grad is not None
    assert all(p.grad is None for p in up.parameters())
    assert audiorep  # the front end takes any audiorep upstream object


def test_mlm_loss_ignores_unmasked_positions():
    torch.manual_seed(0)
    ids = torch.randint(5, 60, (4, 20))
    ids[:, 0], ids[:, -1] = BOS, EOS
    ids[2, 12:] = PAD
    am = (ids != PAD).long()
    masked, labels = mask_tokens(ids, am, SPECIALS, MASK, 60, 0.15, torch.Generator().manual_seed(3))
    picked = labels != IGNORE_INDEX
    assert picked.any(1).all()  # every sequence scores at least one token
    assert not picked[:, 0].any() and not picked[:, -1].any() and not picked[2, 12:].any()
    assert torch.equal(labels[picked], ids[picked]) and torch.equal(masked[~picked], ids[~picked])
    logits = torch.randn(4, 20, 60)
    loss = mlm_loss(logits, labels)
    manual = torch.nn.functional.cross_entropy(logits[picked], ids[picked])
    torch.testing.assert_close(loss, manual)
    # changing predictions at unmasked positions (pads, specials, unpicked tokens) leaves the loss unchanged
    logits2 = logits.clone()
    logits2[~picked] = torch.randn_like(logits2[~picked]) * 10
    torch.testing.assert_close(mlm_loss(logits2, labels), loss)
    # the reimplementation's bug would score every position: a different number
    assert not torch.isclose(loss, torch.nn.functional.cross_entropy(logits.reshape(-1, 60), ids.reshape(-1)))


def test_mask_tokens_80_10_10():
    ids = torch.randint(5, 1000, (64, 256))
    am = torch.ones_like(ids)
    masked, labels = mask_tokens(ids, am, SPECIALS, MASK, 1000, 0.15, torch.Generator().manual_seed(0))
    picked = labels != IGNORE_INDEX
    frac = picked.float().mean().item()
    assert 0.14 < frac < 0.16
    n = picked.sum().item()
    to_mask = (masked[picked] == MASK).sum().item() / n
    unchanged = (masked[picked] == ids[picked]).sum().item() / n
    assert 0.77 < to_mask < 0.83 and 0.08 < unchanged < 0.12
    assert not torch.isin(masked[picked & (masked != MASK)], torch.tensor(SPECIALS)).any()
    with pytest.raises(ConfigError):
        mask_tokens(ids, am, SPECIALS, MASK, 1000, 0.0)


def test_finetune_freezes_exactly_configured_parts(parts):
    model, _ = parts
    model.set_trainable(["lm", "aggregation", "prefix_norm", "head"])
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, trainable in grads.items():
        expect = n.startswith(("roberta.", "laa.aggregation.", "laa.prefix_norm.", "head."))
        assert trainable == expect, n
    model.set_trainable(["gru"])
    assert all(p.requires_grad == n.startswith("laa.gru.") for n, p in model.named_parameters())
    with pytest.raises(ConfigError, match="unknown TEASEL part"):
        model.set_trainable(["bigru"])


def test_precomputed_trunk_states_give_the_same_prediction_and_need_a_frozen_trunk(parts):
    model, fe = parts
    ids, am = text_batch()
    raw, lens = speech_batch(fe)
    model.set_trainable(["lm", "aggregation", "prefix_norm", "head"])  # the paper's fine-tuning setting
    assert model.trunk_frozen
    with torch.no_grad():
        direct = model(ids, am, raw, lens)
        states = model.trunk_states(raw, lens)  # (B, T, 2H)
        assert states.shape == (2, raw.shape[1], 2 * model.laa.config.hidden_size)
        assert torch.all(states[1, int(lens[1]):] == 0)
        cached = model(ids, am, None, lens, states=states)
    torch.testing.assert_close(cached.prediction, direct.prediction)
    torch.testing.assert_close(cached.laa_weights, direct.laa_weights)
    model.set_trainable(["lm", "gru", "aggregation", "head"])
    assert not model.trunk_frozen
    with pytest.raises(ConfigError, match="trunk trains"):
        model(ids, am, None, lens, states=states)


def test_attach_trunk_states_replaces_frames_by_gru_states_only_for_a_frozen_trunk():
    import audiorep.multimodal.teasel_run as tt
    from audiorep.multimodal.teasel_run import Example, attach_trunk_states, collate

    mlm = tiny_lm()
    fe = tiny_w2v()
    model = TeaselModel(mlm.roberta, fe, LAAConfig(), regression=True)
    raw, lens = speech_batch(fe)
    ex = [Example(str(i), "x", 0.5, [BOS, 10 + i, EOS], raw[i, : int(lens[i])].clone()) for i in range(2)]
    model.set_trainable(["lm", "aggregation", "head"])
    cfg = tt.TeaselRunConfig()
    attach_trunk_states(model, ex, cfg)
    assert all(e.raw is None and e.states.shape == (int(lens[i]), 64) for i, e in enumerate(ex))
    with torch.no_grad():  # each utterance's own states, whatever it was batched with
        for i, e in enumerate(ex):
            alone = model.trunk_states(raw[i : i + 1, : int(lens[i])], lens[i : i + 1])[0]  # (T_i, 2H)
            torch.testing.assert_close(e.states, alone)
    b = collate(ex, PAD)
    assert set(b) >= {"states", "frame_lens"} and "raw" not in b and b["frame_lens"].tolist() == lens.tolist()
    model.set_trainable(["gru"])
    with pytest.raises(ConfigError, match="trunk"):
        attach_trunk_states(model, ex, cfg)


def test_laa_checkpoint_roundtrip_and_corruption(tmp_path, parts):
    model, fe = parts
    path = save_laa(model, tmp_path / "laa.safetensors", {"step": 7})
    other = TeaselModel(tiny_lm().roberta, fe, LAAConfig())
    assert load_laa(other, path) == {"step": 7}
    for (k, v), (k2, v2) in zip(model.laa.state_dict().items(), other.laa.state_dict().items()):
        assert torch.equal(v, v2), k
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="laa.safetensors"):
        load_laa(other, path)
    wrong = TeaselModel(tiny_lm().roberta, fe, LAAConfig(share_aggregation=False))
    good = save_laa(model, tmp_path / "good.safetensors")
    with pytest.raises(CheckpointError, match="does not match"):
        load_laa(wrong, good)


def test_text_only_model_and_bad_config():
    mlm = tiny_lm()
    model = TeaselModel(mlm.roberta, None, regression=True).eval()
    ids, am = text_batch()
    out = model(ids, am)
    assert out.hidden.shape == (2, 6, 32) and out.prediction.shape == (2,)
    with pytest.raises(ConfigError):
        LAAConfig(input_dim=10, hidden_size=20, input_projection=False)
    with pytest.raises(ConfigError, match="unknown field"):
        LAAConfig.from_dict({"hidden": 3})


def test_swap_audio_gives_every_example_another_utterances_speech():
    from audiorep.multimodal.teasel_run import Example, swap_audio

    ex = [Example(str(i), f"t{i}", float(i), [BOS, EOS], torch.full((3, 2), float(i))) for i in range(7)]
    swapped = swap_audio(ex, seed=3)
    assert [(e.id, e.text, e.label) for e in swapped] == [(e.id, e.text, e.label) for e in ex]
    sources = [int(e.raw[0, 0]) for e in swapped]
    assert sorted(sources) == list(range(7)) and all(s != i for i, s in enumerate(sources))
    assert all(int(e.raw[0, 0]) == i for i, e in enumerate(ex))  # the originals are untouched
    with pytest.raises(ConfigError, match="at least 2"):
        swap_audio(ex[:1])


def test_optimizer_groups_and_frozen_parts_stay_in_eval_mode():
    """The LM at lr, everything else at head_lr; no decay on biases and norms; train() leaves a frozen LM and
    front end in eval mode (no dropout where nothing learns)."""
    from audiorep.multimodal.teasel_config import load_run_config
    from audiorep.multimodal.teasel_run import Trainee, optimizer_groups

    mlm = tiny_lm()
    model = TeaselModel(mlm.roberta, tiny_w2v(), LAAConfig(), regression=True)
    model.set_trainable(["lm", "aggregation", "prefix_norm", "head"])
    cfg = load_run_config(None, ["lr=1e-4", "head_lr=1e-3", "weight_decay=0.05"])
    groups = [g for g in optimizer_groups(model, cfg) if g["params"]]
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        for p in g["params"]:
            name = names[id(p)]
            assert g["lr"] == (1e-4 if name.startswith("roberta.") else 1e-3), name
            no_decay = p.dim() < 2 or "norm" in name.lower()  # biases, LayerNorms (the prefix norm is (2, H))
            assert g["weight_decay"] == (0.0 if no_decay else 0.05), name
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(trainable)  # each once, nothing frozen
    runner = Trainee(model).train()
    assert model.roberta.training and model.head.training and model.laa.training
    assert not model.front_end.training  # frozen: eval mode
    model.set_trainable(["aggregation"])
    runner.train()
    assert not model.roberta.training and not model.head.training
