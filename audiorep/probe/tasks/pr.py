"""``pr``: SUPERB phoneme recognition. CTC over a frame-level head on the weighted sum, greedy decoding,
PER summed over the whole set (:func:`audiorep.scoring.per`).

Targets are ``labels["phones"]`` (a list of phone strings per utterance). Token ids: 0 the CTC blank, 1 the
end-of-sentence token, then every phone of the targets of all splits, sorted (like s3prl's fixed phone list,
a phone that training never holds keeps an output that is only trained down; s3prl has no blank of its own but
uses its padding token, and it adds an unknown token that no target uses). As in s3prl's CTC expert every
target ends with the end-of-sentence token (CTC learns to emit it) and decoding drops blanks and it; a
reference is scored without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ...data.labels import IGNORE_INDEX
from ...errors import ConfigError
from ...scoring import per
from .base import Meter, Task, register_task

BLANK, EOS = 0, 1
SPECIAL_TOKENS = ("<blank>", "<eos>")


def ctc_min_frames(tokens: list[int]) -> int:
    """Frames a CTC alignment of ``tokens`` needs at least: one per token, plus a blank between repeats."""
    return len(tokens) + sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)


def greedy_decode(log_probs: torch.Tensor, length: int) -> list[int]:
    """Best-path CTC decoding of one utterance: argmax per frame, merge runs, drop blank and end-of-sentence."""
    best = log_probs[:length].argmax(-1).unique_consecutive()  # (T',)
    return [t for t in best.tolist() if t not in (BLANK, EOS)]


class _PhoneErrorRate(Meter):
    def __init__(self) -> None:
        self.hyps: list[list[int]] = []
        self.refs: list[list[int]] = []

    def update(self, outputs, targets, lengths) -> None:
        for b in range(outputs.shape[0]):
            self.hyps.append(greedy_decode(outputs[b], int(lengths[b])))
            ref = targets[b][targets[b] != IGNORE_INDEX].tolist()
            self.refs.append(ref[: ref.index(EOS)] if EOS in ref else ref)

    def compute(self) -> dict[str, float]:
        return {"per": per(self.hyps, self.refs), "utterances": float(len(self.refs))}


@register_task
@dataclass
class PhoneRecognitionTask(Task):
    name: str = "pr"
    heads: tuple[str, ...] = ("superb-frame",)
    default_head: str = "superb-frame"
    primary: str = "per"
    select_mode: str = "min"
    label_key: str = "phones"  # manifest label holding the phone sequence
    tokens: dict[str, torch.Tensor] = field(default_factory=dict)  # utterance id -> token ids ending with EOS

    def setup(self, corpus, splits, train_split) -> None:
        super().setup(corpus, splits, train_split)
        seqs = {}
        for split, utts in splits.items():
            for u in utts:
                seq = u.labels.get(self.label_key)
                if not isinstance(seq, list) or not seq or not all(isinstance(p, str) and p for p in seq):
                    raise ConfigError(f"task 'pr': utterance {u.id!r} (split {split!r}) of corpus {corpus.name!r} has "
                                      f"no phone sequence (labels[{self.label_key!r}] = {seq!r}); prepare the corpus "
                                      "with its SUPERB phone labels")
                seqs[u.id] = (split, seq)
        for uid, (split, seq) in seqs.items():
            clash = [p for p in seq if p in SPECIAL_TOKENS]
            if clash:
                raise ConfigError(f"task 'pr': utterance {uid!r} (split {split!r}) has phone {clash[0]!r}, a name "
                                  "reserved for the CTC blank / end of sentence")
        vocab = sorted({p for _, seq in seqs.values() for p in seq})
        self.class_names = list(SPECIAL_TOKENS) + vocab
        self.num_outputs = len(self.class_names)
        index = {p: i for i, p in enumerate(self.class_names)}
        for uid, (split, seq) in seqs.items():
            self.tokens[uid] = torch.tensor([index[p] for p in seq] + [EOS], dtype=torch.long)

    def target(self, utt, n_frames):
        tok = self.tokens[utt.id]  # (L,)
        need = ctc_min_frames(tok.tolist())
        if n_frames < need:
            raise ConfigError(f"task 'pr': utterance {utt.id!r} has {tok.numel()} target tokens (with end of sentence) "
                              f"that need >= {need} frames, but the upstream gives {n_frames}; CTC cannot align it "
                              "(frame rate too coarse for this transcript)")
        return tok

    def collate_targets(self, targets):
        return torch.nn.utils.rnn.pad_sequence(list(targets), batch_first=True, padding_value=IGNORE_INDEX)  # (B, L)

    def loss(self, outputs, targets, lengths):
        log_probs = F.log_softmax(outputs.float(), dim=-1).transpose(0, 1)  # (T, B, C)
        target_lengths = (targets != IGNORE_INDEX).sum(1)  # (B,)
        # mean over the batch of each utterance's loss / its target length, as torch's CTCLoss default
        return F.ctc_loss(log_probs, targets.clamp_min(0), lengths.to(torch.long), target_lengths, blank=BLANK,
                          reduction="mean", zero_infinity=True)

    def meter(self):
        return _PhoneErrorRate()
