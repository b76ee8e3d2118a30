"""Lazy audio datasets, the padding collate and a length-bucketed (DDP-aware) batch sampler.

Items are dicts: ``wav`` (S,) float32, ``id``, ``speaker``, ``text``, every manifest label and, when a
frame-label file is given, ``frame_labels`` (T,) long. ``collate_waveforms`` pads them into a batch.

Bad files: with ``on_error="raise"`` the first unusable file stops the run with an :class:`AudioError`
naming it (DataLoader re-raises it in the main process). With ``on_error="skip"`` the dataset returns a
small *skip record* instead of an item; the collate moves skip records into ``batch["skipped"]`` and a
:class:`SkipTracker` (or :func:`track_skips`) counts them and reports file and reason at the end of the
epoch — this works with worker processes because the records travel inside the batches.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from ..audio import read_audio_window, resample
from ..errors import AudioError, ConfigError
from .labels import IGNORE_INDEX, num_frames, read_frame_labels
from .manifest import Utterance, read_manifest

log = logging.getLogger(__name__)

_SKIP_KEY = "__skipped__"


class AudioDataset(Dataset):
    """Utterances from a manifest (path or list), read lazily with soundfile.

    Args:
        manifest_or_utterances: a JSON-lines manifest path or a list of :class:`Utterance`.
        sample_rate: the rate items must have (the model's rate).
        max_samples: if set, longer waveforms are randomly cropped to this many samples (pretraining).
            Crops start on a hop boundary so frame labels are cropped with them.
        seed: seeds the crops; item ``i`` in epoch ``e`` gets the same crop on every run and in every worker.
        on_error: ``"raise"`` (stop at the first bad file) or ``"skip"`` (return a skip record; see module doc).
        resample: a file at another rate is an error by default (a silent resample hides a wrong corpus);
            ``True`` resamples it to ``sample_rate`` instead.
        frame_labels: a ``converted_aligned_phones.txt``-style file or ``{id: LongTensor}``; adds
            ``frame_labels`` (T,) to each item. An utterance without labels is an error (or a skip).
        label_tolerance: frames by which label and audio frame counts may differ; within it the labels are
            trimmed or padded (repeating the last class) to the audio's ``T = S // hop + 1``. Larger
            disagreements are errors, never silently truncated.
        hop_length: samples per label frame (160 = 10 ms at 16 kHz).
    """

    def __init__(
        self,
        manifest_or_utterances: str | os.PathLike | Sequence[Utterance],
        sample_rate: int = 16000,
        max_samples: int | None = None,
        *,
        seed: int = 0,
        on_error: str = "raise",
        resample: bool = False,
        frame_labels: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
        label_tolerance: int = 2,
        hop_length: int = 160,
    ) -> None:
        if isinstance(manifest_or_utterances, (str, os.PathLike)):
            self.utterances = read_manifest(manifest_or_utterances)
            self.source = os.fspath(manifest_or_utterances)
        else:
            self.utterances = list(manifest_or_utterances)
            self.source = "<utterances>"
            for i, u in enumerate(self.utterances):
                if not isinstance(u, Utterance):
                    raise ConfigError(f"AudioDataset: item {i} is a {type(u).__name__}, not an Utterance")
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"AudioDataset: on_error must be 'raise' or 'skip', got {on_error!r}")
        if max_samples is not None and max_samples < hop_length:
            raise ConfigError(f"AudioDataset: max_samples must be >= hop_length ({hop_length}), got {max_samples}")
        if sample_rate <= 0:
            raise ConfigError(f"AudioDataset: sample_rate must be positive, got {sample_rate}")
        self.sample_rate = sample_rate
        self.max_samples = max_samples
        self.seed = seed
        self.epoch = 0
        self.on_error = on_error
        self.resample = resample
        self.label_tolerance = label_tolerance
        self.hop_length = hop_length
        if frame_labels is None or isinstance(frame_labels, Mapping):
            self.frame_labels = frame_labels
        else:
            self.frame_labels = read_frame_labels(frame_labels)

    def __len__(self) -> int:
        return len(self.utterances)

    def set_epoch(self, epoch: int) -> None:
        """Change the crops for a new epoch (call it on every rank, like DistributedSampler.set_epoch)."""
        self.epoch = epoch

    @property
    def lengths(self) -> list[int]:
        """Lengths in samples at ``sample_rate`` (after cropping), from the manifest; for length bucketing."""
        out = []
        for u in self.utterances:
            n = u.num_samples if u.sample_rate == self.sample_rate else round(u.num_samples * self.sample_rate / u.sample_rate)
            out.append(min(n, self.max_samples) if self.max_samples else n)
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        utt = self.utterances[index]
        try:
            return self._load(index, utt)
        except AudioError as exc:
            if self.on_error == "raise":
                raise
            return {_SKIP_KEY: True, "id": utt.id, "path": utt.path, "reason": str(exc)}

    def _crops(self, n_samples: int) -> bool:
        """Whether an utterance of ``n_samples`` is cut to ``max_samples``."""
        return self.max_samples is not None and n_samples > self.max_samples

    def _crop_start(self, index: int, n_samples: int) -> int:
        """Where this epoch's random crop of ``index`` starts, on a frame boundary: 0 when nothing is cropped."""
        if not self._crops(n_samples):
            return 0
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
        n_starts = (n_samples - self.max_samples) // self.hop_length + 1
        return int(torch.randint(n_starts, (1,), generator=g)) * self.hop_length

    def _load(self, index: int, utt: Utterance) -> dict[str, Any]:
        start = 0
        if utt.sample_rate == self.sample_rate and self.frame_labels is None:
            # decode only the crop; its start comes from the manifest's length, checked against the file below
            start = self._crop_start(index, utt.num_samples)
            window = self.max_samples if self._crops(utt.num_samples) else None
            try:
                wav, sr, n_file = read_audio_window(utt.path, start, window)  # (S,) or (max_samples,)
            except AudioError:  # whatever is wrong, report it as a whole read does (manifest mismatches first)
                wav, sr, n_file = read_audio_window(utt.path)
                start = 0  # cropped below, as any whole read is
        else:
            wav, sr, n_file = read_audio_window(utt.path)  # (S,)
        # The manifest's rate and length size the batches before any file is opened: a manifest that
        # contradicts its file would bucket and crop by wrong lengths without a word.
        if sr != utt.sample_rate:
            raise AudioError(f"{utt.path}: the manifest says {utt.sample_rate} Hz, the file is sampled at {sr} Hz; "
                             "correct the manifest's sample_rate")
        if utt.num_samples != n_file:
            raise AudioError(f"{utt.path}: manifest says {utt.num_samples} samples, the file has {n_file}")
        if sr != self.sample_rate:
            if not self.resample:
                raise AudioError(
                    f"{utt.path}: sampled at {sr} Hz, expected {self.sample_rate} Hz "
                    "(resample the corpus, or pass resample=True)"
                )
            wav = resample(wav, sr, self.sample_rate)  # (S',)
        labels = None
        if self.frame_labels is not None:
            labels = self.frame_labels.get(utt.id)
            if labels is None:
                raise AudioError(f"{utt.path}: no frame labels for utterance {utt.id!r}")
            labels = self._fit_labels(utt, labels, wav.numel())  # (T,)
        if self._crops(wav.numel()):  # read whole: crop here
            start = self._crop_start(index, wav.numel())
            wav = wav[start : start + self.max_samples]  # (max_samples,)
            if labels is not None:
                f0 = start // self.hop_length
                labels = labels[f0 : f0 + num_frames(wav.numel(), self.hop_length)]
        item: dict[str, Any] = {
            "wav": wav.float().contiguous(),
            "id": utt.id,
            "speaker": utt.speaker,
            "text": utt.text,
            "crop_start": start,
        }
        for k, v in utt.labels.items():
            if k not in item:
                item[k] = v
        if labels is not None:
            item["frame_labels"] = labels
        return item

    def _fit_labels(self, utt: Utterance, labels: torch.Tensor, n_samples: int) -> torch.Tensor:
        """Labels of exactly T = S // hop + 1 frames; AudioError when they are off by more than the tolerance."""
        T = num_frames(n_samples, self.hop_length)
        diff = labels.numel() - T
        if abs(diff) > self.label_tolerance:
            raise AudioError(
                f"{utt.path}: utterance {utt.id!r} has {labels.numel()} frame labels but the audio makes {T} "
                f"frames ({n_samples} samples / hop {self.hop_length}); off by {diff:+d}, "
                f"tolerance {self.label_tolerance}"
            )
        if diff > 0:
            return labels[:T]
        if diff < 0:
            return torch.cat([labels, labels[-1:].expand(-diff)])
        return labels


def collate_waveforms(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pad dataset items into a batch.

    Returns ``wavs`` (B, S) float32 zero-padded, ``wav_lens`` (B,) long, ``frame_labels`` (B, T) long padded
    with -100 and ``frame_lens`` (B,) when items carry them, numeric labels (e.g. ``sentiment``) as float
    tensors, everything else as lists, and ``skipped`` (list of ``(id, path, reason)``) for skip records.
    A batch whose items were all skipped has B = 0.
    """
    items = [b for b in batch if not b.get(_SKIP_KEY)]
    skipped = [(b["id"], b["path"], b["reason"]) for b in batch if b.get(_SKIP_KEY)]
    out: dict[str, Any] = {"skipped": skipped}
    if not items:
        out["wavs"] = torch.zeros(0, 0)
        out["wav_lens"] = torch.zeros(0, dtype=torch.long)
        return out
    wavs = [it["wav"] for it in items]
    out["wav_lens"] = torch.tensor([w.numel() for w in wavs], dtype=torch.long)  # (B,)
    out["wavs"] = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)  # (B, S)
    keys = [k for k in items[0] if k != "wav"]
    for k in keys:
        vals = [it.get(k) for it in items]
        if k == "frame_labels":
            out["frame_lens"] = torch.tensor([v.numel() for v in vals], dtype=torch.long)  # (B,)
            out[k] = torch.nn.utils.rnn.pad_sequence(vals, batch_first=True, padding_value=IGNORE_INDEX)  # (B, T)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals) and k != "crop_start":
            out[k] = torch.tensor(vals, dtype=torch.float32)  # (B,)
        else:
            out[k] = vals
    return out


@dataclass
class SkipTracker:
    """Counts skipped files across batches and reports them once per epoch."""

    skipped: list[tuple[str, str, str]] | None = None

    def __post_init__(self) -> None:
        self.skipped = [] if self.skipped is None else self.skipped

    def update(self, batch: Mapping[str, Any]) -> None:
        self.skipped.extend(batch.get("skipped", ()))

    @property
    def count(self) -> int:
        return len(self.skipped)

    def report(self, max_lines: int = 20) -> str:
        """A human-readable summary: the count and one ``path: reason`` line per skipped file."""
        if not self.skipped:
            return "no files skipped"
        lines = [f"skipped {len(self.skipped)} file(s):"]
        for _id, _path, reason in self.skipped[:max_lines]:
            lines.append(f"  {reason}")
        if len(self.skipped) > max_lines:
            lines.append(f"  ... and {len(self.skipped) - max_lines} more")
        return "\n".join(lines)

    def reset(self) -> None:
        self.skipped = []


def track_skips(loader: Iterable[dict[str, Any]], tracker: SkipTracker | None = None) -> Iterator[dict[str, Any]]:
    """Iterate a DataLoader, dropping empty batches, and log the skip report when the epoch ends."""
    tracker = tracker if tracker is not None else SkipTracker()
    for batch in loader:
        tracker.update(batch)
        if batch["wavs"].shape[0] == 0:
            continue
        yield batch
    if tracker.count:
        log.warning("%s", tracker.report())


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length utterances, shuffled per epoch, split across DDP ranks.

    Each epoch: a seeded permutation of all indices is cut into pools of ``bucket_pools`` batches' worth,
    each pool is sorted by length and cut into batches (so padding stays small), the batch order is
    shuffled, and rank ``r`` takes batches ``r, r + R, r + 2R, ...``. Every rank gets the same number of
    batches (the list is padded by repeating batches, or trimmed with ``drop_last``), so DDP never hangs.
    Batches hold at most ``batch_size`` utterances and, with ``max_batch_samples``, at most that many padded
    samples (B * longest). The order depends only on ``seed`` and ``epoch``; :meth:`state_dict` /
    :meth:`load_state_dict` resume mid-epoch.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        max_batch_samples: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        bucket_pools: int = 50,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"LengthBucketBatchSampler: batch_size must be >= 1, got {batch_size}")
        if len(lengths) == 0:
            raise ConfigError("LengthBucketBatchSampler: no utterances")
        if num_replicas is None or rank is None:
            dist_on = torch.distributed.is_available() and torch.distributed.is_initialized()
            num_replicas = num_replicas if num_replicas is not None else (torch.distributed.get_world_size() if dist_on else 1)
            rank = rank if rank is not None else (torch.distributed.get_rank() if dist_on else 0)
        if not 0 <= rank < num_replicas:
            raise ConfigError(f"LengthBucketBatchSampler: rank {rank} outside [0, {num_replicas})")
        too_long = [i for i, n in enumerate(lengths) if max_batch_samples is not None and n > max_batch_samples]
        if too_long:
            raise ConfigError(
                f"LengthBucketBatchSampler: {len(too_long)} utterance(s) (e.g. index {too_long[0]}, "
                f"{lengths[too_long[0]]} samples) exceed max_batch_samples={max_batch_samples}; crop them "
                "(AudioDataset max_samples) or raise the limit"
            )
        self.lengths = [int(n) for n in lengths]
        self.batch_size = batch_size
        self.max_batch_samples = max_batch_samples
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.bucket_pools = bucket_pools
        self.epoch = 0
        self.start = 0  # batches of this rank already consumed in the current epoch (resume)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shuffle; resets the resume position."""
        self.epoch = epoch
        self.start = 0

    def _all_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g).tolist()
        else:
            g = None
            order = list(range(n))
        pool = self.batch_size * self.bucket_pools
        batches: list[list[int]] = []
        for p in range(0, n, pool):
            chunk = sorted(order[p : p + pool], key=lambda i: self.lengths[i])
            cur: list[int] = []
            longest = 0
            for i in chunk:
                new_longest = max(longest, self.lengths[i])
                full = len(cur) >= self.batch_size or (
                    self.max_batch_samples is not None and new_longest * (len(cur) + 1) > self.max_batch_samples
                )
                if cur and full:
                    batches.append(cur)
                    cur, new_longest = [], self.lengths[i]
                cur.append(i)
                longest = new_longest
            if cur:
                batches.append(cur)
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=g).tolist()
            batches = [batches[j] for j in perm]
        R = self.num_replicas
        if self.drop_last:
            batches = batches[: len(batches) - len(batches) % R]
        elif len(batches) % R:
            extra = R - len(batches) % R
            batches = batches + [batches[j % len(batches)] for j in range(extra)]
        return batches[self.rank :: R]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        start, self.start = self.start, 0
        for k in range(start, len(batches)):
            self.start = k + 1
            yield batches[k]
        self.start = 0

    def __len__(self) -> int:
        return len(self._all_batches())

    def state_dict(self) -> dict[str, int]:
        """Epoch and batches already yielded this epoch; restore with :meth:`load_state_dict`.

        With DataLoader workers prefetching, the sampler runs ahead of training: save the count of batches
        the training loop actually consumed instead (``{"epoch": e, "start": n}``).
        """
        return {"epoch": self.epoch, "start": self.start, "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Resume: the next iteration starts at batch ``state["start"]`` of epoch ``state["epoch"]``."""
        if "seed" in state and state["seed"] != self.seed:
            raise ConfigError(f"LengthBucketBatchSampler: state was saved with seed {state['seed']}, sampler has {self.seed}")
        self.epoch = int(state["epoch"])
        self.start = int(state.get("start", 0))
