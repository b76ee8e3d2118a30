"""The task registry's contract, run for every registered task and each of its heads (timm's test_models style):
the task builds with the head, one batch of the bundled corpus goes through upstream -> head -> loss ->
backward -> meter, and the run's config round-trips. A new task file is covered without editing this test."""

from __future__ import annotations

import math

import pytest
import torch

from audiorep import config
from audiorep.audio import read_audio
from audiorep.data import get_corpus
from audiorep.models.featurizer import Featurizer
from audiorep.probe.heads import HEADS, build_head
from audiorep.probe.run import DownstreamConfig
from audiorep.probe.tasks import TASKS, build_task
from audiorep.weights.loading import load_upstream

CASES = [(name, head) for name, cls in TASKS.items() for head in cls.heads]


@pytest.fixture(scope="module")
def batch():
    """Four training utterances of the bundled corpus (two speakers at least) through the log-mel upstream."""
    corpus = get_corpus("synth")
    train = corpus.manifest("train")
    first = train[0]
    utts = [first] + [u for u in train if u.speaker != first.speaker][:1] + train[1:3]
    feat = Featurizer(load_upstream("logmel"), mode="last")
    wavs = [read_audio(u.path)[0] for u in utts]
    padded = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)  # (B, S)
    with torch.no_grad():
        feats, lengths = feat(padded, torch.tensor([w.numel() for w in wavs]))  # (B, T, H), (B,)
    return corpus, {"train": train}, utts, feats, lengths


def test_every_task_names_registered_heads():
    assert CASES, "no task registered"
    for name, cls in TASKS.items():
        assert cls.default_head in cls.heads and set(cls.heads) <= set(HEADS), name
        assert (cls.table_head or cls.default_head) in cls.heads, name


@pytest.mark.parametrize("name,head", CASES, ids=[f"{t}-{h}" for t, h in CASES])
def test_task_runs_one_batch_with_each_head(name, head, batch):
    corpus, splits, utts, feats, lengths = batch
    task = build_task(name, head)
    task.setup(corpus, splits, "train")
    assert task.num_outputs >= 1 and task.primary
    torch.manual_seed(0)
    model = build_head(head, feats.shape[-1], task.num_outputs)
    out = model(feats, lengths)  # (B, T, C) frame heads, (B, C) utterance heads
    assert out.shape[0] == len(utts) and (out.dim() == 3) == (HEADS[head][1] == "frame")
    targets = task.collate_targets([task.target(u, int(n)) for u, n in zip(utts, lengths.tolist())])
    loss = task.loss(out, targets, lengths)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
    meter = task.meter()
    meter.update(out.detach(), targets, lengths)
    metrics = meter.compute()
    assert task.primary in metrics and not math.isnan(metrics[task.primary])


@pytest.mark.parametrize("name,head", CASES, ids=[f"{t}-{h}" for t, h in CASES])
def test_task_config_round_trips(name, head):
    cfg = DownstreamConfig(task=name, head=head, epochs=2)
    back = config.build(DownstreamConfig, config.to_dict(cfg), "roundtrip")
    assert back == cfg and build_task(back.task, back.head).head == head
