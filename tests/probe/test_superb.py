"""SUPERB tasks (pr, sid, er) and the plan runner: parity with s3prl's downstream code, a tiny end-to-end run,
resume, and one-line errors."""

from __future__ import annotations

import json
import random
from collections import defaultdict

import pytest
import torch
from torch import nn

from audiorep.data.corpus import get_corpus
from audiorep.data.manifest import Utterance
from audiorep.errors import ConfigError
from audiorep.probe.heads import ProjectedFrameLinear, ProjectedMeanLinear
from audiorep.probe.tasks import build_task
from audiorep.probe.tasks.pr import BLANK, EOS, ctc_min_frames, greedy_decode
from audiorep.scoring import edit_distance, per


def _utt(uid, **labels):
    return Utterance(id=uid, path=f"/x/{uid}.wav", num_samples=16000, sample_rate=16000, speaker=labels.pop("spk", "s1"),
                     labels=labels)


class _C:
    name = "fixture"


# ---------------------------------------------------------------- metric and decoding


def test_edit_distance_and_per_sum_over_the_set():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], [1, 2]) == 2
    # summed over the set: (1 + 0) / (2 + 8), not the mean of per-utterance rates (0.25)
    assert per([["a"], list("abcdefgh")], [["a", "b"], list("abcdefgh")]) == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="no tokens"):
        per([[]], [[]])


def test_per_matches_s3prl_metric():
    pytest.importorskip("editdistance")
    metric = pytest.importorskip("s3prl.downstream.ctc.metric")
    rng = random.Random(0)
    phones = ["aa", "b", "ch", "d", "eh"]
    refs = [[rng.choice(phones) for _ in range(rng.randint(1, 12))] for _ in range(30)]
    hyps = [[p for p in r if rng.random() > 0.2] + [rng.choice(phones)] * rng.randint(0, 2) for r in refs]
    hyps = [h or ["aa"] for h in hyps]  # s3prl's ''.split(' ') is one token: compare non-empty hypotheses
    ours = per(hyps, refs)
    theirs = metric.per([" ".join(h) for h in hyps], [" ".join(r) for r in refs])
    assert ours == pytest.approx(theirs, abs=1e-12)


def _pr_task(train_phones, other=None):
    task = build_task("pr")
    splits = {"train": [_utt(f"t{i}", phones=p) for i, p in enumerate(train_phones)],
              "dev": [_utt(f"d{i}", phones=p) for i, p in enumerate(other or train_phones[:1])],
              "test": [_utt("e0", phones=train_phones[0])]}
    task.setup(_C(), splits, "train")
    return task, splits


def test_pr_ctc_loss_decoding_and_per_match_s3prl_expert():
    pytest.importorskip("editdistance")
    expert_mod = pytest.importorskip("s3prl.downstream.ctc.expert")
    from s3prl.downstream.ctc.metric import per as s3prl_per
    from s3prl.downstream.ctc.text import WordTextEncoder

    rng = random.Random(1)
    vocab_phones = ["aa", "b", "ch", "d", "eh", "f"]
    seqs = [[rng.choice(vocab_phones) for _ in range(rng.randint(2, 8))] for _ in range(6)]
    seqs[0] = vocab_phones  # every phone in the training targets
    task, splits = _pr_task(seqs)
    vocab = task.class_names[2:]
    assert vocab == sorted(vocab_phones) and task.class_names[:2] == ["<blank>", "<eos>"]

    # s3prl: <pad>=0 (the blank), <eos>=1, <unk>=2, then the vocabulary; ours has no <unk>: it gets -1e4 there
    enc = WordTextEncoder(vocab)
    expert = expert_mod.DownstreamExpert.__new__(expert_mod.DownstreamExpert)
    nn.Module.__init__(expert)
    expert.tokenizer = enc
    expert.projector = nn.Identity()
    expert.model = lambda feats, lens: (feats, lens)
    expert.objective = nn.CTCLoss(blank=enc.pad_idx, zero_infinity=True)

    utts = splits["train"]
    T = 30
    torch.manual_seed(0)
    logits = torch.randn(len(utts), T, task.num_outputs) * 3  # (B, T, C)
    lengths = torch.tensor([T - 3 * i for i in range(len(utts))])
    logits[1, :, :] = -5.0
    logits[1, 2:6, 3] = 5.0  # a run of one phone amid blanks: one token
    targets = task.collate_targets([task.target(u, int(n)) for u, n in zip(utts, lengths)])

    theirs_logits = torch.cat([logits[..., :2], torch.full((len(utts), T, 1), -1e4), logits[..., 2:]], -1)
    feats = [theirs_logits[b, : lengths[b]] for b in range(len(utts))]
    labels = [enc.encode(" ".join(u.labels["phones"])) for u in utts]
    records = defaultdict(list)
    their_loss = expert.forward("dev", feats, labels, [u.id for u in utts], records)

    assert float(task.loss(logits, targets, lengths)) == pytest.approx(float(their_loss), rel=1e-5)
    meter = task.meter()
    meter.update(logits, targets, lengths)
    hyps = [" ".join(task.class_names[t] for t in h) for h in meter.hyps]
    refs = [" ".join(task.class_names[t] for t in r) for r in meter.refs]
    assert refs == records["groundtruth"] == [" ".join(u.labels["phones"]) for u in utts]
    assert hyps == records["hypothesis"]
    assert all(hyps)  # (s3prl counts an empty hypothesis as one token; none here)
    assert meter.compute()["per"] == pytest.approx(s3prl_per(hyps, refs))


def test_greedy_decode_drops_blank_eos_and_repeats():
    lp = torch.full((8, 5), -10.0)
    for t, c in enumerate([BLANK, 3, 3, BLANK, 3, EOS, 4, 4]):
        lp[t, c] = 0.0
    assert greedy_decode(lp, 8) == [3, 3, 4]
    assert greedy_decode(lp, 3) == [3]
    assert ctc_min_frames([2, 2, 3, EOS]) == 5


def test_pr_errors_missing_labels_unknown_phone_and_short_audio():
    task = build_task("pr")
    with pytest.raises(ConfigError, match=r"utterance 'd0' \(split 'dev'\).*no phone sequence"):
        task.setup(_C(), {"train": [_utt("t0", phones=["a"])], "dev": [_utt("d0")], "test": [_utt("e0", phones=["a"])]},
                   "train")
    with pytest.raises(ConfigError, match="phone '<eos>', a name reserved"):
        _pr_task([["a", "<eos>"]])
    task, _ = _pr_task([["a", "b"]], other=[["a", "zz"]])  # a phone only dev holds still has its output
    assert task.class_names == ["<blank>", "<eos>", "a", "b", "zz"]
    task, splits = _pr_task([["a", "a", "b"]])
    with pytest.raises(ConfigError, match="need >= 5 frames, but the upstream gives 4"):
        task.target(splits["train"][0], 4)


# ---------------------------------------------------------------- utterance-level heads and tasks


def test_superb_mean_head_matches_s3prl_utterance_level():
    model_mod = pytest.importorskip("s3prl.downstream.model")
    torch.manual_seed(0)
    ours = ProjectedMeanLinear(12, 4)
    theirs = model_mod.UtteranceLevel(input_dim=256, output_dim=4, pooling="MeanPooling")
    theirs.post_net.linear.load_state_dict(ours.out.state_dict())
    x = torch.randn(3, 9, 12)  # (B, T, H)
    lens = torch.tensor([9, 5, 1])
    x_pad = x.clone()
    x_pad[1, 5:] = 100.0  # padding must not leak into the mean
    x_pad[2, 1:] = -100.0
    expect, _ = theirs(ours.projector(x), lens)
    assert torch.allclose(ours(x_pad, lens), expect, atol=1e-5)
    assert ProjectedFrameLinear(12, 7)(x, lens).shape == (3, 9, 7)


def test_sid_crop_window_is_seeded_and_bounded():
    task = build_task("sid")
    a = [task.train_window(2000, 160, random.Random(5)) for _ in range(3)]
    assert a[0] == a[1] == a[2] and a[0][1] == 800 and 0 <= a[0][0] <= 1200
    assert task.train_window(300, 160, random.Random(0)) == (0, 300)


def test_er_label_outside_class_set_and_sid_unknown_speaker():
    task = build_task("er")
    good = [_utt(f"u{i}", style="flat", session=1) for i in range(2)]
    with pytest.raises(ConfigError, match="style='angry', not one of neutral, emphatic, flat"):
        task.setup(_C(), {"train": good, "dev": [_utt("d", style="angry", session=1)], "test": good}, "train")
    sid = build_task("sid")
    with pytest.raises(ConfigError, match="speaker 'zz'"):
        sid.setup(_C(), {"train": [_utt("a", spk="s1"), _utt("b", spk="s2")], "dev": [_utt("c", spk="zz")],
                         "test": [_utt("d", spk="s1")]}, "train")


def test_er_folds_are_s3prls_random_split_and_leave_one_session_out():
    from audiorep.probe.superb import SuperbConfig, task_folds

    corpus, folds = task_folds(SuperbConfig(upstream="logmel", out="unused", tasks=["er"]), "er")
    utts = corpus.utterances()
    assert len(folds) == 5
    for s, fold in enumerate(folds, 1):
        assert {u.labels["session"] for u in fold["test"]} == {s}
        rest = [u for u in utts if u.labels["session"] != s]
        torch.manual_seed(0)  # what s3prl's emotion dataset does right before its random_split
        n_train = int(0.8 * len(rest))
        tr, dv = torch.utils.data.random_split(rest, [n_train, len(rest) - n_train])
        assert [u.id for u in fold["train"]] == [u.id for u in tr]
        assert [u.id for u in fold["dev"]] == [u.id for u in dv]


def test_empty_fold_and_unknown_task_are_one_line_errors(tmp_path, monkeypatch):
    from audiorep.probe import superb

    with pytest.raises(ConfigError, match="unknown SUPERB task 'asr'"):
        superb.SuperbConfig(upstream="logmel", out=str(tmp_path), tasks=["pr", "asr"])
    corpus = get_corpus("synth")
    no_s5 = [u for u in corpus.utterances() if u.labels["session"] != 5]
    monkeypatch.setattr(type(corpus), "utterances", lambda self: no_s5)
    with pytest.raises(ConfigError, match="session 5 has no utterances"):
        superb.task_folds(superb.SuperbConfig(upstream="logmel", out=str(tmp_path), tasks=["er"]), "er")


# ---------------------------------------------------------------- the command, end to end


def _tiny(out, **kw):
    from audiorep.probe.superb import SuperbConfig

    args = dict(upstream="logmel", out=str(out), tasks=["pr", "sid", "er"], quick=True, steps=2, lrs=[1e-2],
                max_utts=12, progress=False, device="cpu")
    args.update(kw)
    return SuperbConfig(**args)


def test_superb_command_end_to_end_and_resume(tmp_path, monkeypatch, capsys):
    from audiorep.cli import main
    from audiorep.probe import superb

    out = tmp_path / "run"
    rc = main(["superb", "--upstream", "logmel", "--tasks", "pr", "sid", "er", "--data", "synth", "--quick",
               "--steps", "2", "--lrs", "1e-2", "--max-utts", "12", "--device", "cpu", "--no-progress",
               "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "superb.json").read_text())
    assert set(report["tasks"]) == {"pr", "sid", "er"}
    assert report["audiorep_version"] and "FBANK" in report["upstream"] and report["data"] == "synth"
    for r in report["tasks"].values():
        assert r["lr"] == 1e-2 and r["seeds"] == [0] and r["steps"] == 2
        assert set(r) >= {"metric", "value", "std", "lr", "seeds", "converged", "runs", "dev_by_lr"}
        for run in r["runs"]:
            assert 0 < run["best_step"] <= run["steps_run"] == 2
            assert run["converged"] == (run["best_step"] < run["steps_run"])
    assert report["tasks"]["er"]["folds"] == 5 and len(report["tasks"]["er"]["runs"]) == 5
    assert report["tasks"]["pr"]["metric"] == "PER %" and report["tasks"]["pr"]["value"] >= 0
    assert "| pr | PER %" in (out / "superb.md").read_text()
    assert list((out / "cache").glob("*.safetensors"))  # features computed once and kept
    assert "pr: PER %" in capsys.readouterr().out

    # resume: a finished plan trains nothing; a unit cut mid-way (no results.json) restarts, alone
    calls = []
    real = superb.run_downstream
    monkeypatch.setattr(superb, "run_downstream", lambda cfg, **kw: calls.append(cfg.out_dir) or real(cfg, **kw))
    superb.run_superb(_tiny(out))
    assert calls == []
    cut = out / "units" / "sid" / "lr0.01-seed0"
    (cut / "results.json").unlink()
    superb.run_superb(_tiny(out))
    assert calls and all(c == str(cut) for c in calls)


def test_superb_refuses_foreign_or_mismatched_out(tmp_path):
    from audiorep.probe import superb

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="did not write"):
        superb.run_superb(_tiny(tmp_path, tasks=["sid"]))
    assert (tmp_path / "notes.txt").read_text() == "mine"
    run = tmp_path / "run"
    superb._claim_out(_tiny(run, tasks=["sid"]))
    with pytest.raises(ConfigError, match=r"other settings \(steps\)"):
        superb._claim_out(_tiny(run, tasks=["sid"], steps=3))


def test_training_batches_are_capped_by_duration_and_cropped():
    from audiorep.probe.run import DownstreamConfig, _Split

    task = build_task("sid")
    utts = [_utt(f"u{i}", spk=f"s{i % 3}") for i in range(40)]
    task.setup(_C(), {"train": utts}, "train")
    rng = random.Random(0)
    states = [torch.zeros(1, rng.randint(50, 1500), 4, dtype=torch.float16) for _ in utts]  # (K, T, H)
    split = _Split("train", utts, task, states, frame_hop=160)
    cfg = DownstreamConfig(task="sid", batch_size=8, batch_seconds=20.0)
    cap = 20 * 16000 // 160  # frames of padded audio per batch
    seen = 0
    for kind, x, lens, tgt in split.batches(cfg, 16000, True, 0, torch.device("cpu")):
        assert x.shape[1] * x.shape[2] <= cap and x.shape[1] <= 8 and int(lens.max()) <= 800  # crops of 8 s
        seen += x.shape[1]
    assert seen == len(utts)
    with pytest.raises(ConfigError, match="batch_seconds=4 s is shorter than the longest training example"):
        next(split.batches(DownstreamConfig(task="sid", batch_seconds=4.0), 16000, True, 0, torch.device("cpu")))
    # evaluation never crops, and one long utterance still gets a batch
    lens_eval = [int(b[2].max()) for b in split.batches(cfg, 16000, False, 0, torch.device("cpu"))]
    assert max(lens_eval) == max(s.shape[1] for s in states)


def test_budgets_stop_early_on_the_bundled_corpus_only(tmp_path):
    """The bundled corpus caps steps and stops a unit once dev stalls; real corpora keep s3prl's step counts
    with no early stop, --quick or not; --steps replaces either (dev every steps // 4)."""
    from audiorep.probe.superb import PRESETS, SuperbConfig

    synth = SuperbConfig(upstream="logmel", out=str(tmp_path), quick=True)
    real = SuperbConfig(upstream="logmel", out=str(tmp_path), data="corpora", quick=True)
    for task, p in PRESETS.items():
        assert synth.budget(task) == (p.synth_steps, p.synth_eval_every, p.synth_patience)
        assert real.budget(task) == (p.max_steps, p.eval_every, None)
        assert synth.grid(task) == p.quick_lr_grid and synth.n_seeds == 1
    assert real.budget("pr") == (100_000, 1000, None) and real.budget("sid") == (200_000, 5000, None)
    tests = SuperbConfig(upstream="logmel", out=str(tmp_path), steps=8)
    assert tests.budget("er") == (8, 2, PRESETS["er"].synth_patience)
    assert SuperbConfig(upstream="logmel", out=str(tmp_path)).grid("pr") == (1e-1, 1e-2, 1e-3, 1e-4)


def test_logmel_floors_with_and_without_cmvn():
    """logmel = FBANK without per-utterance CMVN (its mean over time carries the utterance's spectrum);
    logmel-cmvn = the encoders' input, whose mean over valid frames is zero in every bin."""
    from audiorep.probe.superb import load_superb_upstream

    wav = torch.randn(2, 8000) * torch.linspace(0.1, 1.0, 8000)
    lens = torch.tensor([8000, 5000])
    plain, label = load_superb_upstream("logmel", torch.device("cpu"))
    cmvn, label2 = load_superb_upstream("logmel-cmvn", torch.device("cpu"))
    assert "FBANK" in label and "CMVN" in label2
    a, b = plain(wav, lens), cmvn(wav, lens)
    n = int(b.lengths[1])
    assert b.last_hidden_state[1, :n].mean(0).abs().max() < 1e-4
    assert a.last_hidden_state[1, :n].mean(0).abs().max() > 1.0
