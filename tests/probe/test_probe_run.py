"""Downstream runs on a tiny corpus the test writes: label alignment, the loop, resume, bad input, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep.data import Utterance, get_corpus, write_frame_labels, write_label_names, write_manifest
from audiorep.probe import DownstreamConfig, Featurizer, LogMelUpstream, align_frame_labels, run_downstream
from audiorep.probe.run import check_upstream
from audiorep.probe.tasks import build_task
from audiorep.errors import ConfigError
from audiorep.features import FeatureConfig

SR = 16000
HOP = 160
TONES = [300.0, 700.0, 1300.0, 2500.0]  # one "phone" class per tone


def make_corpus(root: Path, speakers: int = 3, utts: int = 5, label_shift: int = 0) -> Path:
    """Utterances of tone segments (class = tone); each speaker adds its own low hum; sentiment in [-3, 3].

    Splits share speakers (train 3 / dev 1 / test 1 per speaker), as the bundled corpus's train/dev/test do.
    """
    rng = np.random.default_rng(0)
    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True)
    rows: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    labels = {}
    for s in range(speakers):
        for i in range(utts):
            n_seg = 3 + (i % 3)
            seg_frames = rng.integers(8, 16, n_seg)
            classes = rng.integers(0, len(TONES), n_seg)
            S = int(seg_frames.sum()) * HOP - 37  # not a multiple of the hop
            t = np.arange(S) / SR
            frame_cls = np.repeat(classes, seg_frames)  # (frames,)
            frame_cls = np.concatenate([frame_cls, frame_cls[-1:]])[: S // HOP + 1]
            freq = np.array([TONES[c] for c in frame_cls])[np.minimum(np.arange(S) // HOP, len(frame_cls) - 1)]
            wav = 0.3 * np.sin(2 * np.pi * np.cumsum(freq) / SR) + 0.2 * np.sin(2 * np.pi * (90 + 60 * s) * t)
            wav += 0.01 * rng.standard_normal(S)
            uid = f"spk{s}-{i:02d}"
            path = wav_dir / f"{uid}.wav"
            sf.write(path, wav.astype(np.float32), SR)
            lab = frame_cls.tolist() + [frame_cls[-1]] * label_shift
            labels[uid] = lab
            split = "dev" if i == 0 else "test" if i == 1 else "train"
            senti = float(np.clip(-2.5 + 2.5 * s + 0.1 * i, -3, 3))
            rows[split].append(Utterance(uid, str(path), S, SR, f"spk{s}", "", {"sentiment": senti}))
    for split, us in rows.items():
        write_manifest(us, root / f"{split}.jsonl")
    write_frame_labels(labels, root / "converted_aligned_phones.txt")
    write_label_names([f"tone{k}" for k in range(len(TONES))], root / "phones.txt")
    return root


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("ds_corpus"))


def cfg(tmp_path, corpus_dir, **kw) -> DownstreamConfig:
    base = dict(data=str(corpus_dir), out_dir=str(tmp_path / "run"), epochs=3, patience=3, batch_size=4,
                progress=False, lr=3e-2)
    base.update(kw)
    return DownstreamConfig(**base)


def test_align_frame_labels_tolerance():
    lab = torch.arange(10)
    assert align_frame_labels(lab, 9, "u", 2).tolist() == list(range(9))
    assert align_frame_labels(lab, 12, "u", 2).tolist() == list(range(10)) + [-100, -100]
    with pytest.raises(ConfigError, match="'u'.*10 frame labels.*5 frames"):
        align_frame_labels(lab, 5, "u", 2)


def test_frame_labels_line_up_with_features(corpus_dir):
    """Every utterance: the upstream's frame count equals the label count (after the documented tolerance)."""
    corpus = get_corpus(corpus_dir)
    task = build_task("phone")
    splits = {s: corpus.manifest(s) for s in ("train", "dev", "test")}
    task.setup(corpus, splits, "train")
    feat = Featurizer(LogMelUpstream(), "last")
    from audiorep.audio import read_audio

    for u in splits["train"]:
        wav, _ = read_audio(u.path)
        _, lengths = feat(wav[None], torch.tensor([wav.numel()]))
        assert int(lengths[0]) == u.num_samples // HOP + 1 == task.labels[u.id].numel()
        assert (task.target(u, int(lengths[0])) != -100).all()


def test_phone_probe_on_logmel_learns_and_writes_outputs(tmp_path, corpus_dir):
    res = run_downstream(cfg(tmp_path, corpus_dir, task="phone", upstream="logmel", epochs=4, patience=4))
    assert res.test["frame_acc"] > 0.8  # tone classes are linearly separable in log-mel
    out = res.out_dir
    info = json.loads((out / "results.json").read_text())
    assert info["test"]["frame_acc"] == pytest.approx(res.test["frame_acc"])
    assert (out / "best.pt").is_file() and (out / "metrics.csv").is_file()
    assert len(res.history) == res.epochs_run == 4


def test_speaker_weighted_sum_and_frame_head(tmp_path, corpus_dir, tiny_model):
    up = tiny_model()
    before = {k: v.clone() for k, v in up.state_dict().items()}
    res = run_downstream(cfg(tmp_path, corpus_dir, task="speaker", upstream="tiny"), upstream=up)
    assert set(res.test) >= {"acc", "loss"} and len(res.layer_weights) == 3
    assert abs(sum(res.layer_weights) - 1) < 1e-5
    assert all(torch.equal(v, up.state_dict()[k]) for k, v in before.items())  # frozen upstream untouched
    res2 = run_downstream(cfg(tmp_path, corpus_dir, task="speaker", head="frame-linear", mode="last",
                              out_dir=str(tmp_path / "frame")), upstream=tiny_model())
    assert {"frame_acc", "vote_acc"} <= set(res2.test)


def test_sentiment_regression_reports_mmsa_metrics(tmp_path, corpus_dir):
    res = run_downstream(cfg(tmp_path, corpus_dir, task="sentiment", upstream="logmel", epochs=2))
    assert {"Has0_acc_2", "Non0_F1", "Mult_acc_7", "MAE", "Corr"} <= set(res.test)


def test_finetune_without_cache_trains_upstream(tmp_path, corpus_dir, tiny_model):
    up = tiny_model()
    before = [p.detach().clone() for p in up.parameters()]
    res = run_downstream(cfg(tmp_path, corpus_dir, task="phone", upstream="tiny", mode="finetune", epochs=1,
                             max_utts=4), upstream=up)
    assert res.epochs_run == 1
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, up.parameters()))


def test_resume_continues_and_existing_run_is_refused(tmp_path, corpus_dir):
    c = cfg(tmp_path, corpus_dir, task="speaker", upstream="logmel", epochs=2, patience=5)
    first = run_downstream(c)
    with pytest.raises(ConfigError, match="already holds a run"):
        run_downstream(c)
    more = cfg(tmp_path, corpus_dir, task="speaker", upstream="logmel", epochs=3, patience=5)
    res = run_downstream(more, resume=True)
    assert res.epochs_run == 3 and len(res.history) == 3
    assert res.history[:2] == first.history  # the first two epochs are the resumed ones, not re-run


# ---------------------------------------------------------------- bad input, before training

def test_frame_rate_mismatch_is_refused(tmp_path, corpus_dir):
    slow = LogMelUpstream(FeatureConfig(hop_ms=20.0))
    with pytest.raises(ConfigError, match="frame shift is 20 ms"):
        run_downstream(cfg(tmp_path, corpus_dir, task="phone"), upstream=slow)

    class Strided(torch.nn.Module):  # an upstream without a feature_config, at half the frame rate
        num_layers, hidden_size, sample_rate = 0, 80, SR

        def __init__(self):
            super().__init__()
            self.inner = LogMelUpstream()

        def forward(self, wavs, wav_lens=None):
            out = self.inner(wavs, wav_lens)
            h = out.hidden_states[0][:, ::2]
            return type(out)((h,), h, (out.lengths + 1) // 2)

    with pytest.raises(ConfigError, match="upstream gives .* frames"):
        run_downstream(cfg(tmp_path, corpus_dir, task="phone"), upstream=Strided())


def test_labels_off_by_more_than_tolerance(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=2, utts=3, label_shift=5)
    with pytest.raises(ConfigError, match=r"spk0-0\d.*frame labels but its audio"):
        run_downstream(cfg(tmp_path, root, task="phone"))


def test_label_outside_class_set(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=2, utts=3)
    (root / "phones.txt").write_text("tone0\ntone1\n")  # classes 2, 3 now outside the set
    with pytest.raises(ConfigError, match=r"outside \[0, 2\)"):
        run_downstream(cfg(tmp_path, root, task="phone"))


def test_task_dataset_mismatch(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=2, utts=3)
    (root / "converted_aligned_phones.txt").unlink()
    with pytest.raises(ConfigError, match="needs frame labels"):
        run_downstream(cfg(tmp_path, root, task="phone"))
    # sentiment needs a sentiment label on every utterance
    m = root / "dev.jsonl"
    m.write_text(m.read_text().replace('"sentiment"', '"valence"'))
    with pytest.raises(ConfigError, match="no 'sentiment' label"):
        run_downstream(cfg(tmp_path, root, task="sentiment"))
    # speaker ID on speaker-disjoint splits
    m.write_text(m.read_text().replace('"spk0"', '"spk9"'))
    with pytest.raises(ConfigError, match="speakers not in 'train'.*spk9"):
        run_downstream(cfg(tmp_path, root, task="speaker"))


def test_empty_split_and_unknown_split(tmp_path):
    root = make_corpus(tmp_path / "c", speakers=2, utts=3)
    (root / "test.jsonl").write_text("")
    with pytest.raises(ConfigError, match="split 'test'.*empty"):
        run_downstream(cfg(tmp_path, root, task="speaker"))
    with pytest.raises(ConfigError, match="no split 'spk_dev'"):
        run_downstream(cfg(tmp_path, root, task="speaker", dev_split="spk_dev"))


def test_bad_head_and_task(tmp_path, corpus_dir):
    with pytest.raises(ConfigError, match="head 'mean-linear' not available"):
        run_downstream(cfg(tmp_path, corpus_dir, task="phone", head="mean-linear"))
    with pytest.raises(ConfigError, match="unknown task"):
        run_downstream(cfg(tmp_path, corpus_dir, task="emotion"))


def test_cli_prints_test_metrics(tmp_path, corpus_dir, capsys):
    from audiorep.cli import main

    rc = main(["downstream", "--task", "speaker", "--upstream", "logmel", "--data", str(corpus_dir),
               "--out", str(tmp_path / "cli"), "--epochs", "2", "--no-progress"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    kv = dict(line.split(": ", 1) for line in lines)
    assert 0.0 <= float(kv["test_acc"]) <= 1.0 and "best_epoch" in kv
    rc = main(["downstream", "--task", "phone", "--upstream", "logmel", "--data", str(corpus_dir),
               "--out", str(tmp_path / "cli2"), "--mode", "layer"])
    assert rc == 2
    assert "needs layer" in capsys.readouterr().err


def test_probe_table_on_tiny_models(tmp_path, corpus_dir, tiny_model):
    from audiorep.probe.table import probe_table

    model_dir = tiny_model().save_pretrained(tmp_path / "tinyjay" / "final")
    table = probe_table({"Tiny": str(model_dir)}, modes=["weighted-sum", "last"], tasks=["speaker", "phone"],
                        data=str(corpus_dir), out_dir=tmp_path / "probe", epochs=1, progress=False,
                        keep_cache=True, contexts=(1, 2))
    md = (tmp_path / "probe" / "probe_table.md").read_text()
    assert md == table.markdown
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| upstream | speaker weighted sum | speaker last layer | phone weighted sum")
    assert rows[1].startswith("| log-mel (floor, no encoder) |")
    assert rows[2].startswith("| log-mel ±k (floor, k on dev: speaker k=") and rows[3].startswith("| Tiny |")
    # the stacked row shows, per task, the test score of the candidate with the best dev score
    for task, col in (("speaker", 1), ("phone", 3)):
        cands = [c for c in table.cells if c["task"] == task and c["upstream"].startswith("log-mel ±")]
        best = max(cands, key=lambda c: c["best_dev"][c["metric"]])
        assert rows[2].split(" | ")[col] == f"{100 * best['test'][best['metric']]:.1f}"
    assert "Stacked-context candidates" in md
    assert len(table.cells) == 2 * (1 + 2 + 2)
    # frozen cells of one upstream share one on-disk cache per split (all hidden states); the stacked
    # floors get their own, keyed by their context
    assert len(list((tmp_path / "probe" / "cache").glob("*.safetensors"))) == 4 * 3
    again = probe_table({"Tiny": str(model_dir)}, modes=["weighted-sum", "last"], tasks=["speaker", "phone"],
                        data=str(corpus_dir), out_dir=tmp_path / "probe", epochs=1, progress=False, contexts=(1, 2))
    assert again.markdown.splitlines()[:-1] == md.splitlines()[:-1]  # finished cells are reused


def test_bundled_corpus_labels_line_up_with_upstream_frames():
    """On the shipped corpus: every utterance's phone labels fit its 10 ms frames, and an upstream's output
    frame count equals the label count (checked through the log-mel front end on a few utterances)."""
    from audiorep.data import list_corpora

    if "synth" not in list_corpora():
        pytest.skip("bundled corpus not present")
    corpus = get_corpus("synth")
    splits = {s: corpus.manifest(s) for s in ("train", "dev", "test")}
    task = build_task("phone")
    task.setup(corpus, splits, "train")  # raises on any utterance off by more than the tolerance
    assert task.num_outputs == 41
    exact = sum(task.labels[u.id].numel() == u.num_samples // HOP + 1 for us in splits.values() for u in us)
    assert exact == sum(len(us) for us in splits.values())
    feat = Featurizer(LogMelUpstream(), "last")
    from audiorep.audio import read_audio

    for u in sorted(splits["dev"], key=lambda u: u.num_samples)[:3]:
        wav, _ = read_audio(u.path)
        _, lengths = feat(wav[None], torch.tensor([wav.numel()]))
        assert int(lengths[0]) == task.labels[u.id].numel()
    check_upstream(task, feat, {"dev": splits["dev"][:1]}, torch.device("cpu"))


def _ddp_worker(rank: int, world: int, port: int, corpus: str, out: str, result_dir: str, tiny_model) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.manual_seed(0)
    torch.set_num_threads(1)
    up = tiny_model()
    res = run_downstream(DownstreamConfig(task="speaker", upstream="tiny", mode="finetune", data=corpus, out_dir=out,
                                          epochs=1, batch_size=2, progress=False, device="cpu"), upstream=up)
    flat = torch.cat([p.detach().reshape(-1) for p in up.parameters()])
    torch.save({"test": res.test, "params": flat}, f"{result_dir}/rank{rank}.pt")


@pytest.mark.slow
def test_finetune_under_two_process_ddp(tmp_path, corpus_dir, tiny_model):
    """torchrun-style world of 2 (gloo): ranks train on different batches but stay identical (DDP averages
    gradients), agree on the test metrics, and only rank 0 writes the run folder."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(corpus_dir), str(tmp_path / "run"), str(tmp_path), tiny_model),
             nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["test"] == r1["test"]
    torch.testing.assert_close(r0["params"], r1["params"])
    assert (tmp_path / "run" / "results.json").is_file() and (tmp_path / "run" / "best.pt").is_file()


def test_speaker_task_on_a_small_max_utts_blames_the_subset_not_the_corpus():
    from audiorep.data import get_corpus
    from audiorep.errors import ConfigError
    from audiorep.data.manifest import seeded_subset as _subset
    from audiorep.probe.tasks import build_task

    corpus = get_corpus("synth")
    splits = {s: _subset(corpus.manifest(s), 20, 0) for s in ("train", "dev", "test")}
    with pytest.raises(ConfigError, match=r"the utterance subsets asked for \(--max-utts / --max-train-utts: "
                                          r"train 20 of 480, dev 20 of 90, test 20 of 90\) leave split 'dev'"):
        build_task("speaker").setup(corpus, splits, "train")
    # a corpus whose splits do not share speakers is still the corpus's fault
    full = {s: corpus.manifest(s) for s in ("spk_train", "spk_dev")}
    with pytest.raises(ConfigError, match="speaker ID needs splits that share speakers"):
        build_task("speaker").setup(corpus, full, "spk_train")


def test_int8_precision_probes_a_quantised_copy_with_its_own_cache(tmp_path, corpus_dir, tiny_model):
    """precision int8: the frozen upstream runs with dynamic int8 linears (a copy: the caller's model keeps its
    fp32 weights), its cached states get their own key, and training the upstream with it is refused."""
    up = tiny_model()
    before = {k: v.clone() for k, v in up.state_dict().items()}
    shared = tmp_path / "feature-cache"
    runs = {}
    for prec in ("fp32", "int8"):
        runs[prec] = run_downstream(cfg(tmp_path, corpus_dir, task="speaker", upstream="tiny", precision=prec,
                                        feature_cache=str(shared), out_dir=str(tmp_path / prec)), upstream=up)
    assert all(torch.equal(v, up.state_dict()[k]) for k, v in before.items())
    files = sorted(p.name.split("-")[0] for p in shared.rglob("*.safetensors"))
    assert files == ["dev", "dev", "test", "test", "train", "train"]  # each precision cached its own three splits
    assert runs["int8"].test["loss"] != runs["fp32"].test["loss"]  # the quantised states really differ
    with pytest.raises(ConfigError, match="precision int8 quantises a frozen upstream; mode finetune"):
        cfg(tmp_path, corpus_dir, mode="finetune", precision="int8")
    with pytest.raises(ConfigError, match="precision must be auto, fp32, bf16 or int8"):
        cfg(tmp_path, corpus_dir, precision="int4")
