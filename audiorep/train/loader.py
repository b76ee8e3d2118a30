"""An endless, resumable stream of batches over epochs: the sampler position is part of a checkpoint."""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError

log = logging.getLogger(__name__)


class _SkipFirst:
    """Batch sampler view that drops the first ``skip`` index lists (no audio is read for them)."""

    def __init__(self, batch_sampler: Iterable[list[int]], skip: int):
        self.batch_sampler, self.skip = batch_sampler, skip

    def __iter__(self) -> Iterator[list[int]]:
        for k, batch in enumerate(self.batch_sampler):
            if k >= self.skip:
                yield batch

    def __len__(self) -> int:
        return max(0, len(self.batch_sampler) - self.skip)  # type: ignore[arg-type]


class ResumableBatches:
    """Iterate batches forever, epoch after epoch, remembering (epoch, batches consumed) for checkpoints.

    ``set_epoch`` is called on the batch sampler and the dataset (when they have it) at each epoch start,
    so shuffles and crops follow the epoch. Batches with no utterance left (every file skipped as bad)
    are counted as consumed and not yielded.
    """

    def __init__(self, dataset: Dataset, batch_sampler: Iterable[list[int]], collate_fn: Callable,
                 num_workers: int = 0, pin_memory: bool = False, seed: int = 0):
        self.seed = seed
        self.dataset, self.batch_sampler, self.collate_fn = dataset, batch_sampler, collate_fn
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.epoch = 0
        self.consumed = 0  # batches of this epoch handed to the training loop
        self.skipped: list[tuple[str, str, str]] = []

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            for obj in (self.batch_sampler, self.dataset):
                if hasattr(obj, "set_epoch"):
                    obj.set_epoch(self.epoch)
            # A private generator: a DataLoader otherwise draws its worker seed from the global torch RNG,
            # which would shift the dropout stream depending on where a run was resumed.
            gen = torch.Generator().manual_seed(1_000_003 * self.seed + self.epoch)
            loader = DataLoader(self.dataset, batch_sampler=_SkipFirst(self.batch_sampler, self.consumed),
                                collate_fn=self.collate_fn, num_workers=self.num_workers,
                                pin_memory=self.pin_memory, generator=gen)
            yielded, fresh = 0, self.consumed == 0
            for batch in loader:
                self.consumed += 1
                self.skipped.extend(batch.get("skipped", ()))
                if batch["wavs"].shape[0] == 0:
                    continue
                yielded += 1
                yield batch
            if fresh and yielded == 0:
                raise ConfigError("the training data yields no usable batch (empty manifest or every file skipped)")
            if self.skipped:
                log.warning("epoch %d: skipped %d unreadable file(s), e.g. %s", self.epoch, len(self.skipped),
                            self.skipped[0][2])
                self.skipped = []
            self.epoch += 1
            self.consumed = 0
