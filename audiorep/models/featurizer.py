"""Featurizer: an upstream's hidden states -> one (B, T, H) feature sequence for a downstream head.

Modes (the two the Mockingjay / AALBERT papers evaluate, plus single-layer probes):

- ``weighted-sum``: the upstream is frozen (eval mode, ``requires_grad=False``, run under ``no_grad``); one
  learnable weight per hidden state, zero-initialised, softmax-normalised, weighted sum. With every weight
  at zero the sum is the plain mean of the hidden states.
- ``finetune``: the upstream is trainable; on top, the same weighted sum (``layer=None``) or one chosen
  hidden state (``layer=-1`` = last layer).
- ``last``: the frozen upstream's last hidden state.
- ``layer``: the frozen upstream's hidden state ``layer`` (0 = input embedding output).

The frozen modes split the forward pass in two (:meth:`Featurizer.upstream_states` then
:meth:`Featurizer.combine`) so a training loop can run the upstream once per utterance, cache the states
it needs, and train the head on the cache.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

MODES = ("weighted-sum", "finetune", "last", "layer")


def weighted_layer_sum(logits: torch.Tensor, states: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The s3prl-style weighted sum: ``softmax(logits)`` over the K hidden states stacked along ``dim``.

    logits: (K,) one learnable weight per hidden state; states: e.g. (K, B, T, H) with ``dim=0`` or
    (B, K, T, H) with ``dim=1`` -> the states' shape without ``dim``. The weights take the states' dtype.
    """
    w = torch.softmax(logits, dim=0).to(states.dtype)  # (K,)
    if dim == 0 and states.is_contiguous():
        # one (1, K) @ (K, N) product: no (K, ...) temporary, and its backward is another GEMV (the weighted sum
        # of a frozen upstream's states is most of a SUPERB probe's step)
        return (w[None] @ states.reshape(states.shape[0], -1)).reshape(states.shape[1:])
    shape = [1] * states.dim()
    shape[dim] = -1
    return (w.view(shape) * states).sum(dim)


class Featurizer(nn.Module):
    """Hidden states of ``upstream`` -> ``(features (B, T, H), lengths (B,))``; see the module doc for modes.

    Args:
        upstream: any audiorep upstream (``upstream(wavs, wav_lens)`` returns hidden_states and lengths,
            and it has ``num_layers`` and ``hidden_size``), or :class:`LogMelUpstream`.
        mode: ``"weighted-sum"``, ``"finetune"``, ``"last"`` or ``"layer"``.
        layer: the hidden state for ``mode="layer"`` (required; negative counts from the end) and, in
            ``finetune`` mode, ``None`` = weighted sum on top, an index = that hidden state.
        layer_norm: normalise each hidden state over H (no affine) before the weighted sum, so a layer
            with a large scale cannot dominate the sum by magnitude alone.
    """

    def __init__(self, upstream: nn.Module, mode: str = "weighted-sum", layer: int | None = None,
                 layer_norm: bool = False):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"Featurizer: mode must be one of {', '.join(MODES)}; got {mode!r}")
        n_states = int(upstream.num_layers) + 1
        if mode == "layer" and layer is None:
            raise ConfigError("Featurizer: mode='layer' needs layer=N (0 = input embedding, -1 = last)")
        if mode in ("weighted-sum", "last") and layer is not None:
            raise ConfigError(f"Featurizer: layer={layer} is only used with mode='layer' or 'finetune'")
        if layer is not None:
            if not -n_states <= layer < n_states:
                raise ConfigError(f"Featurizer: layer {layer} out of range; the upstream has hidden states "
                                  f"0..{n_states - 1} (or -{n_states}..-1)")
            layer = layer % n_states
        if mode == "last":
            layer = n_states - 1
        self.upstream = upstream
        self.mode = mode
        self.layer = layer  # None = weighted sum over every hidden state
        self.layer_norm = layer_norm
        self.num_states = n_states
        self.hidden_size = int(upstream.hidden_size)
        # zero init: softmax gives 1/K each, so training starts from the mean of the hidden states
        self.weights = nn.Parameter(torch.zeros(n_states)) if layer is None else None
        if self.frozen:
            upstream.requires_grad_(False)
            upstream.eval()

    @property
    def frozen(self) -> bool:
        """True when the upstream is not trained (every mode except finetune)."""
        return self.mode != "finetune"

    @property
    def needed_states(self) -> list[int]:
        """Indices of the hidden states :meth:`combine` reads (what a feature cache must keep)."""
        return list(range(self.num_states)) if self.layer is None else [self.layer]

    def train(self, mode: bool = True) -> "Featurizer":
        super().train(mode)
        if self.frozen:
            self.upstream.eval()  # dropout stays off in a frozen upstream whatever the head does
        return self

    def upstream_states(self, wavs, wav_lens=None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Run the upstream; returns the :attr:`needed_states` hidden states (each (B, T, H)) and lengths (B,).

        Frozen modes run under ``no_grad``; the returned tensors carry no graph.
        """
        if self.frozen:
            with torch.no_grad():
                out = self.upstream(wavs, wav_lens)
        else:
            out = self.upstream(wavs, wav_lens)
        states = [out.hidden_states[i] for i in self.needed_states]
        return states, out.lengths

    def combine(self, states: Sequence[torch.Tensor] | torch.Tensor, lengths: torch.Tensor | None = None
                ) -> torch.Tensor:
        """The needed hidden states (a list of (B, T, H), or a stacked (K, B, T, H)) -> features (B, T, H)."""
        if len(states) != len(self.needed_states):
            raise ConfigError(f"Featurizer.combine: expected {len(self.needed_states)} hidden state(s) "
                              f"({self.needed_states}), got {len(states)}")
        stacked = (states if isinstance(states, torch.Tensor) else torch.stack(list(states))).float()  # (K, B, T, H)
        if self.layer_norm:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])  # (K, B, T, H), each state's frames on their own
        if self.weights is None:
            feats = stacked[0]  # (B, T, H)
        else:
            feats = weighted_layer_sum(self.weights, stacked.contiguous())  # (K, B, T, H) -> (B, T, H)
        if lengths is not None and self.layer_norm:
            # layer norm makes padded (zero) frames non-zero again; keep the padding contract
            keep = torch.arange(feats.shape[1], device=feats.device) < lengths[:, None].to(feats.device)  # (B, T)
            feats = feats * keep.unsqueeze(-1)
        return feats

    def forward(self, wavs, wav_lens=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms (as for the upstream) -> (features (B, T, H), lengths (B,))."""
        states, lengths = self.upstream_states(wavs, wav_lens)
        return self.combine(states, lengths), lengths

    def layer_weights(self) -> torch.Tensor:
        """Softmax weight per hidden state (K,); a one-hot vector in single-layer modes."""
        if self.weights is None:
            w = torch.zeros(self.num_states)
            w[self.layer] = 1.0
            return w
        return torch.softmax(self.weights.detach().float().cpu(), dim=0)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What training changes: the layer weights, plus the upstream in finetune mode."""
        return {k: v for k, v in self.state_dict().items() if not (self.frozen and k.startswith("upstream."))}
