"""Sanity figures for a synthetic corpus: are its labels learnable, and does the audio matter for sentiment?

    python recipes/synth_corpus_checks.py [--corpus synth] [--codec] [--out results.json]

1. Speaker ID: multinomial logistic regression (plain torch, L-BFGS) on per-utterance mean and std of
   log-mel (CMVN off), trained on ``train``, scored on ``test`` (split by utterance).
2. Sentiment, split by speaker (``spk_train`` -> ``spk_test``): ridge regression on
   * text only: bag of words of the transcript;
   * text + prosody: bag of words, two prosodic measures (seconds per word, spread of log-F0) and their
     products with the bag of words (the label multiplies lexical polarity by a prosodic style, which a
     purely additive model cannot express);
   * text + true style (ceiling of a bag-of-words model that knew the style exactly).
   Reported as MAE, Pearson correlation and Acc-2 (non-zero labels, sign agreement), as MMSA does.
3. Style (emphatic / neutral / flat), ``train`` -> ``test``: one-vs-rest ridge on the one-hot style from
   per-utterance mean and std of log-mel (CMVN off), the same plus mean and std of |frame difference|,
   seconds per word, and seconds per word divided by the speaker's mean over ``train``: what a probe on
   pooled frames can read, against the cue that defines the style (rate relative to the speaker's own).
4. ``--codec``: re-synthesizes 3 speakers losslessly (needs festival/flite/sox) and compares their
   CMVN log-mel features with the bundled Ogg Vorbis files.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time

import torch

from audiorep.data import get_corpus
from audiorep.errors import AudiorepError
from audiorep.data.dataset import AudioDataset
from audiorep.features import FeatureConfig, FeatureExtractor


def _load(corpus, split):
    ds = AudioDataset(corpus.manifests[split])
    return [ds[i] for i in range(len(ds))]


STYLES = ("emphatic", "neutral", "flat")


def _pooled_logmel(items) -> torch.Tensor:
    """Per utterance: mean and std of log-mel (CMVN off) and of |frame-to-frame difference|, (N, 320)."""
    fx = FeatureExtractor(FeatureConfig(cmvn=False))
    rows = []
    for it in items:
        with torch.no_grad():
            f, _ = fx(it["wav"][None], torch.tensor([it["wav"].numel()]))  # (1, T, 80)
        d = (f[0, 1:] - f[0, :-1]).abs()  # (T - 1, 80)
        rows.append(torch.cat([f[0].mean(0), f[0].std(0), d.mean(0), d.std(0)]))  # (320,)
    return torch.stack(rows)


def _seconds_per_word(item) -> float:
    """Utterance length over its word count (the corpus's speaking-rate cue)."""
    return item["wav"].numel() / 16000 / max(1, len(re.findall(r"[a-z']+", item["text"])))


def speaker_id(tr, te, pooled) -> dict:
    """Speaker ID on ``train`` -> ``test`` items; ``pooled``: their :func:`_pooled_logmel` rows."""
    spk = sorted({it["speaker"] for it in tr})
    ytr = torch.tensor([spk.index(it["speaker"]) for it in tr])
    yte = torch.tensor([spk.index(it["speaker"]) for it in te])
    xtr, xte = pooled[0][:, :160], pooled[1][:, :160]  # (N, 160): mean and std
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    lin = torch.nn.Linear(xtr.shape[1], len(spk))
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xtr), ytr) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        acc = (lin(xte).argmax(1) == yte).float().mean().item()
        acc_tr = (lin(xtr).argmax(1) == ytr).float().mean().item()
    return {"speakers": len(spk), "train_utts": len(tr), "test_utts": len(te), "train_acc": round(acc_tr, 4),
            "test_acc": round(acc, 4), "chance": round(1 / len(spk), 4)}


def _prosody(item) -> tuple[float, float]:
    """(seconds per word, std of log-F0 over voiced frames) from the waveform and the word count."""
    from audiorep.optional import require

    AF = require("torchaudio.functional", "the prosody check (pitch tracking)")

    wav = item["wav"]
    sec_per_word = _seconds_per_word(item)
    f0 = AF.detect_pitch_frequency(wav[None], 16000, frame_time=0.02, win_length=5, freq_low=60, freq_high=400)[0]
    hop = wav.numel() / max(1, f0.numel())
    energy = torch.stack([wav[int(i * hop): int((i + 1) * hop)].pow(2).mean() for i in range(f0.numel())])
    voiced = (energy > 0.1 * energy.max()) & (f0 > 60) & (f0 < 400)
    lf = f0[voiced].log() if voiced.sum() > 3 else torch.zeros(4)
    return sec_per_word, lf.std().item()


def _bow(texts, vocab):
    x = torch.zeros(len(texts), len(vocab))
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z']+", t):
            if w in vocab:
                x[i, vocab[w]] += 1
    return x


def _ridge(x, y, lam):
    x1 = torch.cat([x, torch.ones(len(x), 1)], 1)
    reg = lam * torch.eye(x1.shape[1])
    reg[-1, -1] = 0
    return torch.linalg.solve(x1.T @ x1 + reg, x1.T @ y)


def _predict(w, x):
    return torch.cat([x, torch.ones(len(x), 1)], 1) @ w


def _fit_ridge(x, y, lams=(1e-2, 1e-1, 1.0, 10.0, 100.0)):
    """Ridge weights and the strength chosen on a held-out fifth of the training rows (by MAE)."""
    n_val = len(x) // 5
    best = min(lams, key=lambda lam: (_predict(_ridge(x[n_val:], y[n_val:], lam), x[:n_val]) - y[:n_val]).abs().mean())
    return _ridge(x, y, best), best


def _metrics(pred, y) -> dict:
    pred = pred.clamp(-3, 3)
    mae = (pred - y).abs().mean().item()
    corr = torch.corrcoef(torch.stack([pred, y]))[0, 1].item()
    nz = y != 0
    acc2 = ((pred[nz] > 0) == (y[nz] > 0)).float().mean().item()
    return {"mae": round(mae, 3), "corr": round(corr, 3), "acc2_non0": round(100 * acc2, 1)}


def sentiment(corpus) -> dict:
    tr, te = _load(corpus, "spk_train"), _load(corpus, "spk_test")
    vocab = {}
    for it in tr:
        for w in re.findall(r"[a-z']+", it["text"]):
            vocab.setdefault(w, len(vocab))
    ytr = torch.tensor([it["sentiment"] for it in tr])
    yte = torch.tensor([it["sentiment"] for it in te])
    btr, bte = _bow([it["text"] for it in tr], vocab), _bow([it["text"] for it in te], vocab)
    ptr = torch.tensor([_prosody(it) for it in tr])  # (N, 2)
    pte = torch.tensor([_prosody(it) for it in te])
    raw = pte.clone()
    mu, sd = ptr.mean(0), ptr.std(0)
    ptr, pte = (ptr - mu) / sd, (pte - mu) / sd
    str_ = torch.nn.functional.one_hot(torch.tensor([STYLES.index(it["style"]) for it in tr]), 3).float()
    ste = torch.nn.functional.one_hot(torch.tensor([STYLES.index(it["style"]) for it in te]), 3).float()

    def inter(b, p):  # bag of words times each prosodic measure, plus the measures
        return torch.cat([b] + [b * p[:, k : k + 1] for k in range(p.shape[1])] + [p, p.pow(2)], 1)

    def style_inter(b, s):
        return torch.cat([b * s[:, k : k + 1] for k in range(3)] + [s], 1)

    out = {"train_utts": len(tr), "test_utts": len(te)}
    for name, xa, xb in [("text_only", btr, bte), ("text_prosody", inter(btr, ptr), inter(bte, pte)),
                         ("text_true_style", style_inter(btr, str_), style_inter(bte, ste))]:
        w, best = _fit_ridge(xa, ytr)
        out[name] = {**_metrics(_predict(w, xb), yte), "ridge": best}
    # prosodic measures by style: shows the cue the model can hear
    out["prosody_by_style"] = {
        s: {"sec_per_word": round(raw[ste[:, k] == 1, 0].mean().item(), 3),
            "logf0_std": round(raw[ste[:, k] == 1, 1].mean().item(), 3)} for k, s in enumerate(STYLES)
    }
    return out


def style(tr, te, pooled) -> dict:
    """Style accuracy (%) of one-vs-rest ridge, train -> test, from pooled frames and from speaking rate."""
    ytr = torch.tensor([STYLES.index(it["style"]) for it in tr])
    yte = torch.tensor([STYLES.index(it["style"]) for it in te])

    r_tr, r_te = (torch.tensor([_seconds_per_word(it) for it in items]) for items in (tr, te))  # (N,)
    own = {s: r_tr[[i for i, it in enumerate(tr) if it["speaker"] == s]].mean() for s in {it["speaker"] for it in tr}}
    rel_tr = r_tr / torch.stack([own[it["speaker"]] for it in tr])
    rel_te = r_te / torch.stack([own[it["speaker"]] for it in te])
    p_tr, p_te = pooled
    sets = {
        "logmel_mean_std": (p_tr[:, :160], p_te[:, :160]),
        "logmel_mean_std_plus_delta": (p_tr, p_te),
        "sec_per_word": (torch.stack([r_tr, r_tr ** 2], 1), torch.stack([r_te, r_te ** 2], 1)),
        "sec_per_word_over_speaker_mean": (torch.stack([rel_tr, rel_tr ** 2], 1), torch.stack([rel_te, rel_te ** 2], 1)),
    }
    onehot = torch.nn.functional.one_hot(ytr, 3).float()
    out = {"train_utts": len(tr), "test_utts": len(te),
           "majority_pct": round(100 * yte.bincount().max().item() / len(yte), 1)}
    for name, (xa, xb) in sets.items():
        mu, sd = xa.mean(0), xa.std(0) + 1e-6
        w, lam = _fit_ridge((xa - mu) / sd, onehot)
        acc = (_predict(w, (xb - mu) / sd).argmax(1) == yte).float().mean().item()
        out[name] = {"acc_pct": round(100 * acc, 1), "ridge": lam}
    return out


def codec(corpus, speakers=(2, 12, 22)) -> dict:
    """Lossless re-synthesis of a few speakers vs the bundled Ogg files (CMVN log-mel mean |diff|)."""
    import soundfile as sf

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "synth"))  # the generator: a recipe script
    from synth_gen import make_speakers, synth_speaker

    by_id = {u.id: u for u in corpus.utterances()}
    fx = FeatureExtractor(FeatureConfig())
    n_utts = sum(1 for u in by_id if u.startswith("spk01-"))
    diffs, cos, n_frames = [], [], 0
    with tempfile.TemporaryDirectory() as td:
        for i in speakers:
            rows, _ = synth_speaker(make_speakers()[i], n_utts, 0, td, "flac")
            for r in rows:
                a, _ = sf.read(f"{td}/{r['path']}", dtype="float32")
                b, _ = sf.read(by_id[r["id"]].path, dtype="float32")
                with torch.no_grad():
                    fa, _ = fx(torch.from_numpy(a)[None], torch.tensor([len(a)]))
                    fb, _ = fx(torch.from_numpy(b)[None], torch.tensor([len(b)]))
                diffs.append((fa - fb).abs().mean().item())
                cos.append(torch.nn.functional.cosine_similarity(fa[0], fb[0], dim=-1).mean().item())
                n_frames += fa.shape[1]
    return {"utterances": len(diffs), "frames": n_frames, "cmvn_logmel_mean_abs_diff": round(sum(diffs) / len(diffs), 4),
            "frame_cosine": round(sum(cos) / len(cos), 4), "feature_std": 1.0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="synth")
    p.add_argument("--codec", action="store_true", help="also compare with a lossless re-synthesis")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # small matrices; the machine is shared
    t0 = time.time()
    try:
        corpus = get_corpus(a.corpus)
        tr, te = _load(corpus, "train"), _load(corpus, "test")  # speaker ID and style share the split by utterance
        pooled = (_pooled_logmel(tr), _pooled_logmel(te))
        res = {"corpus": corpus.info(), "speaker_id": speaker_id(tr, te, pooled), "sentiment": sentiment(corpus),
               "style": style(tr, te, pooled)}
        if a.codec:
            res["codec"] = codec(corpus)
    except AudiorepError as e:  # a missing extra or a bad corpus: one line, not a traceback
        print(f"synth_corpus_checks: {e}", file=sys.stderr)
        return 2
    res["seconds"] = round(time.time() - t0, 1)
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
