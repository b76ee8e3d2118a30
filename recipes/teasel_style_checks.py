"""Why does (or doesn't) TEASEL's speech prefix help on the bundled corpus? Two checks on its speaking style.

The synth label is lexical polarity x speaking style (emphatic 1.5, neutral 1, flat -0.5), so a prefix helps
only if it carries the style and the LM learns to use it.

    python recipes/teasel_style_checks.py probe [key=value ...]
    python recipes/teasel_style_checks.py oracle --noise 0.8 --seed 0 [key=value ...]

* ``probe``: ridge (one-vs-rest, standardised features) from train to test utterances, predicting the style
  from (a) the front end's time-averaged frames, (a') their time mean and std side by side, (b) the LAA's
  time-averaged GRU states and (c) the two prefix vectors. Accuracy for ridge weights 1 / 10 / 100; the majority class is 38.9 % on the test split.
* ``oracle``: a TEASEL fine-tuning run whose "front end" is the true style as a one-hot vector (10 frames),
  optionally with one Gaussian draw of std ``--noise`` per utterance added (0.8 -> about 70 % of argmax
  styles right). Everything else is ``run_finetune`` with the given config, so it shows what the LM side can
  do with a prefix of known quality. Diagnostic only: it replaces the front-end builder and the feature
  step of :mod:`audiorep.multimodal.teasel_run` inside this process.

Both read ``recipes/configs/teasel/finetune.yaml`` and apply ``key=value`` overrides, as ``audiorep teasel`` does
(e.g. ``front_end=upstream``, ``upstream=exp/aalbert-small-.../final``, ``laa_checkpoint=...``).
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

import audiorep.multimodal.teasel_run as tt
from audiorep.data import get_corpus
from audiorep.multimodal.teasel_config import load_run_config

STYLES = ("emphatic", "neutral", "flat")
CONFIG = "recipes/configs/teasel/finetune.yaml"


def _styles(cfg, split: str, examples) -> torch.Tensor:
    by_id = {u.id: u for u in get_corpus(cfg.data).manifest(split)}
    return torch.tensor([STYLES.index(by_id[e.id].labels["style"]) for e in examples])  # (N,)


def ridge_accuracy(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                   lam: float) -> float:
    """Argmax accuracy on the test rows of a one-vs-rest ridge fit (standardised features, bias column)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    a = torch.cat([(x - mu) / sd, torch.ones(len(x), 1)], 1)  # (N, D + 1)
    b = torch.cat([(x_test - mu) / sd, torch.ones(len(x_test), 1)], 1)
    w = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1]), a.T @ nn.functional.one_hot(y, 3).double())
    return float((b @ w).argmax(1).eq(y_test).double().mean())


@torch.no_grad()
def probe(overrides: list[str]) -> dict:
    """Style accuracy of the front end, the GRU states and the prefix (train -> test)."""
    cfg = load_run_config(CONFIG, overrides)
    tok, mlm, _, front_end, label, data, _ = tt._prepare(cfg, [cfg.train_split, cfg.test_split], True)
    model = tt.build_model(cfg, mlm, front_end, "finetune")
    if cfg.laa_checkpoint:
        tt.load_laa(model, cfg.laa_checkpoint)
    model.eval()
    pooled = {}
    for split in (cfg.train_split, cfg.test_split):
        parts: dict[str, list[torch.Tensor]] = {"front end": [], "front end mean+std": [], "GRU states": [],
                                                "prefix": []}
        for s in range(0, len(data[split]), 16):
            b = tt.collate(data[split][s : s + 16], tok.pad_token_id)
            lens = b["frame_lens"]
            valid = (torch.arange(b["raw"].shape[-2]) < lens[:, None]).unsqueeze(-1).float()  # (B, T, 1)
            frames = model.front_end(b["raw"])  # (B, T, D)
            states = model.trunk_states(b["raw"], lens)  # (B, T, 2H)
            mean = (frames * valid).sum(1) / lens[:, None]  # (B, D)
            var = ((frames - mean[:, None]).square() * valid).sum(1) / lens[:, None]  # (B, D)
            parts["front end"].append(mean)
            parts["front end mean+std"].append(torch.cat([mean, var.sqrt()], 1))  # (B, 2D)
            parts["GRU states"].append((states * valid).sum(1) / lens[:, None])
            parts["prefix"].append(model.laa.aggregate(states, lens).prefix.flatten(1))  # (B, 2H)
        pooled[split] = {k: torch.cat(v).double() for k, v in parts.items()}
    y, y_test = (_styles(cfg, s, data[s]) for s in (cfg.train_split, cfg.test_split))
    out = {"front_end": label, "laa_checkpoint": cfg.laa_checkpoint}
    for name in pooled[cfg.train_split]:
        out[name] = [round(100 * ridge_accuracy(pooled[cfg.train_split][name], y, pooled[cfg.test_split][name],
                                                y_test, lam), 1) for lam in (1.0, 10.0, 100.0)]
    return out


class _OracleFrontEnd(nn.Module):
    """Stands in for a speech front end: its 'features' are set per utterance by :func:`oracle`."""

    output_dim = 3
    sample_rate = 16000

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return raw


def oracle(noise: float, seed: int, overrides: list[str]) -> dict:
    """Fine-tune TEASEL with the true style (plus noise) as its speech input; returns the results dict."""
    cfg = load_run_config(CONFIG, ["laa_checkpoint=null", f"seed={seed}",
                                   f"out_dir=exp/teasel/oracle-n{noise}-s{seed}"] + overrides)
    draws = {cfg.train_split: 0, cfg.dev_split: 1, cfg.test_split: 2}

    def style_frames(examples, cfg, front_end, split, batch_size=8, cache_key=None):
        g = torch.Generator().manual_seed(1000 * seed + draws[split])
        for e, s in zip(examples, _styles(cfg, split, examples)):
            x = nn.functional.one_hot(s, 3).float().expand(10, 3)  # (10, 3)
            e.raw = x + noise * torch.randn(1, 3, generator=g)  # one draw per utterance, not per frame

    tt.build_front_end = lambda cfg: (_OracleFrontEnd(), f"ORACLE style one-hot, noise std {noise}")
    tt.attach_features = style_frames
    return tt.run_finetune(cfg)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("check", choices=["probe", "oracle"])
    p.add_argument("--noise", type=float, default=0.0, help="oracle: std of the per-utterance noise")
    p.add_argument("--seed", type=int, default=0, help="oracle: run seed")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="TeaselRunConfig overrides")
    a = p.parse_intermixed_args()
    if a.check == "probe":
        print(json.dumps(probe(a.overrides)))
        return
    r = oracle(a.noise, a.seed, a.overrides)
    t, s = r["test"], r["test_audio_swapped"]
    print(json.dumps({"noise": a.noise, "seed": a.seed, "best_epoch": r["best_epoch"],
                      "test": {k: t[k] for k in ("MAE", "Corr", "Has0_acc_2", "Has0_F1")},
                      "test_audio_swapped_Corr": s["Corr"], "out_dir": r["config"]["out_dir"]}))


if __name__ == "__main__":
    main()
