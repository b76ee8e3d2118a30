"""DMD (Li et al., CVPR 2023): decoupled multimodal distillation, trained with the objective of the authors'
code (mdswyz/DMD at 516d4e1).

Per modality: dropout on the text states, then a temporal Conv1d projection (no bias, no padding) to d; a
private encoder per modality and one shared encoder for all (Conv1d k=1); a decoder Conv1d(2d -> d) on
[private; shared] reconstructs the projected input (MSE), and re-encoding the reconstruction with the private
encoder must give the private features back (cycle MSE). Neither target is detached: both sides of each MSE
learn. Private and shared features are pushed apart by a soft orthogonality term (cosine embedding loss,
target -1, i.e. max(0, cos)); the shared features of all modalities obey the label-margin loss of
:func:`margin_loss`.

Shared stream: each modality's shared sequence runs through its own self-attention stack; the pooled results,
concatenated, feed a residual-MLP head whose prediction is trained with the task L1 like every other head.

Two graph distillation (GD) units (:class:`GDUnit`): the homogeneous one on the pooled shared features, the
heterogeneous one on the private features after cross-modal transformers (every directed modality pair) and a
self-attention memory. Each unit has a residual-MLP head per modality (logit + representation) and learns one
weight per directed edge: softmax over the edges of the edge scores divided by ``gd_temperature``. The
distillation weight of an edge is that weight plus a fixed prior, and a regulariser pulls the batch-mean edge
weights toward the prior (:func:`edge_prior`).

Fusion: sigmoid(Linear) of each enhanced private stream and of the concatenated shared stream, concatenated,
then a residual MLP -> the prediction. Total loss:

    task (fused + shared head + every GD node, all L1)
    + w_homo * (logit distillation + regulariser)                       [homogeneous unit]
    + w_hetero * (logit distillation + representation term + regulariser) [heterogeneous unit]
    + w_decouple * (recon + cycle + w_inner * (margin + orth))

Unaligned, ragged sequences: where the published code flattens a fixed-length sequence or takes its last step,
features here are masked means over valid steps, so any length works; missing modalities (no vision) drop out
of the graphs (2 directed edges instead of 6) and out of the prior. The README's "What differs from the
published code" lists every difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .base import register_head
from ..common import CrossLayer, FusionHead, FusionOutput, TextEncoder, l1, lengths_to_mask, masked_mean

MODALITIES = ("T", "A", "V")


@dataclass
class DMDConfig:
    """DMD sizes and loss settings. Defaults are the published MOSI ones; :func:`dmd_mosi` / :func:`dmd_mosei`
    give the two published settings with the MMSA feature sizes."""

    audio_dim: int = 5  # input audio feature size
    vision_dim: int | None = None  # None = no vision modality
    d: int = 50  # common width after the temporal projections (published: 50 MOSI, 30 MOSEI)
    heads: int = 10  # attention heads in every transformer (d and (M-1)*d must divide; 10 MOSI, 6 MOSEI)
    kernel_text: int = 5  # temporal Conv1d kernel per modality (published: 5/5/5 MOSI, 5/1/3 MOSEI)
    kernel_audio: int = 5
    kernel_vision: int = 5
    cross_layers: int = 4  # layers per directed cross-modal transformer (published nlevels = 4)
    memory_layers: int = 3  # self-attention layers per target modality after the cross-modal ones
    shared_layers: int = 4  # self-attention layers over each shared sequence before the shared head (nlevels)
    homo_gd_size: int = 64  # edge-scoring width of the homogeneous GD unit
    hetero_gd_size: int = 32  # ... and of the heterogeneous one
    dropout: float = 0.1  # inside the transformers (one value; the published ones differ per modality)
    output_dropout: float = 0.5  # inside every residual-MLP head (GD nodes, shared head, fusion): published 0.5
    text_dropout: float = 0.5  # on the text states before their projection: published 0.5 MOSI, 0.3 MOSEI
    margin_scale: float = 0.15  # label margin: margin(i, k) = scale * |y_i - y_k| (published constant)
    # graph distillation: the published values, the same for MOSI and MOSEI
    gd_temperature: float = 8.0  # edge scores / 8 before the softmax: flatter, slower-moving edge weights
    gd_prior_temperature: float = 0.25  # prior = softmax(favoured 1 / others 0, divided by this): ~0.48 each
    homo_prior: list[str] = field(default_factory=lambda: ["T->A", "T->V"])  # text teaches the shared space
    hetero_prior: list[str] = field(default_factory=lambda: ["T->A", "T->V", "V->A"])  # ...; vision teaches audio
    gd_reg: float = 10.0  # weight of sum_e (batch-mean weight_e - prior_e)^2: keeps the graph near the prior
    gd_logit_weight: float = 1.0  # weight of the L1 logit distillation in both units (w_losses[0])
    gd_repr_weight: float = 10.0  # heterogeneous representation term (w_losses[1]); the homogeneous unit has none
    # total = task + w_homo * GD_homo + w_hetero * GD_hetero + w_decouple * (recon + cycle + w_inner * (margin + orth))
    w_homo: float = 0.05  # published: distillation guides, the task terms dominate
    w_hetero: float = 0.05  # published, as w_homo
    w_decouple: float = 0.1  # published: decoupling shapes the features without outweighing the task
    w_inner: float = 0.1  # published: margin + orthogonality, inside the decoupling weight (0.01 in all)

    def __post_init__(self):
        for name in ("gd_temperature", "gd_prior_temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"DMDConfig.{name} must be > 0; got {getattr(self, name)}")
        for name in ("homo_prior", "hetero_prior"):
            for edge in getattr(self, name):
                parse_edge(edge, f"DMDConfig.{name}")


def dmd_mosi(**overrides) -> DMDConfig:
    """The published CMU-MOSI setting over MMSA features (audio 5-d, vision 20-d); ``overrides`` replace fields."""
    return DMDConfig(**{"audio_dim": 5, "vision_dim": 20, **overrides})


def dmd_mosei(**overrides) -> DMDConfig:
    """The published CMU-MOSEI setting over MMSA features (audio 74-d, vision 35-d): d 30, 6 heads, kernels
    5/1/3, text dropout 0.3; ``overrides`` replace fields."""
    return DMDConfig(**{"audio_dim": 74, "vision_dim": 35, "d": 30, "heads": 6, "kernel_audio": 1,
                        "kernel_vision": 3, "text_dropout": 0.3, **overrides})


def parse_edge(edge: str, where: str = "edge") -> tuple[str, str]:
    """``"T->A"`` -> ("T", "A"): teacher, student. ConfigError naming ``where`` for anything else."""
    parts = edge.split("->") if isinstance(edge, str) else []
    if len(parts) != 2 or parts[0] not in MODALITIES or parts[1] not in MODALITIES or parts[0] == parts[1]:
        raise ConfigError(f"{where}: {edge!r} is not 'TEACHER->STUDENT' with two different modalities of "
                          f"{', '.join(MODALITIES)}")
    return parts[0], parts[1]


def edge_prior(edges: Sequence[tuple[str, str]], favoured: Sequence[str], temperature: float) -> torch.Tensor:
    """Prior weight per directed edge (teacher, student): softmax over ``edges`` of (1 if ``"T->S"`` is in
    ``favoured`` else 0) / ``temperature``. Favoured edges of a modality the model lacks are simply absent.

    Published: 6 edges, 2 favoured at temperature 0.25 -> e^4 / (2 e^4 + 4) = 0.482 each, 0.0088 for the rest.
    """
    wanted = {parse_edge(e, "edge_prior") for e in favoured}
    logits = torch.tensor([1.0 if e in wanted else 0.0 for e in edges])  # (E,)
    return torch.softmax(logits / temperature, 0)


def orthogonality_loss(private: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
    """Cosine embedding loss with target -1 (margin 0): mean over rows of max(0, cos(private, shared)).

    Zero exactly when every private/shared pair is orthogonal or points away."""
    return F.cosine_embedding_loss(private, shared, -torch.ones(private.shape[0], device=private.device))


def margin_loss(feats: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """Label-margin (hinge) loss over rows of shared features (rows = modality x sample), as published.

    A row's positives are all other rows with an *equal label*, whichever sample or modality they come from;
    its negatives are the rows with another label. Per anchor i: the mean over (positive j, negative k) of
    max(0, scale * |y_i - y_k| - cos(i, j) + cos(i, k)). The loss is the mean over anchors that have at least one
    positive and one negative (0 when none has).

    ``feats`` (R, D), ``labels`` (R,) -> scalar.
    """
    if feats.dim() != 2:
        raise ValueError(f"margin_loss: feats must be (rows, dim); got shape {tuple(feats.shape)}")
    y = labels.reshape(-1).to(feats.dtype)
    if y.shape[0] != feats.shape[0]:
        raise ValueError(f"margin_loss: labels has {y.shape[0]} values for {feats.shape[0]} rows of feats")
    z = feats / torch.sqrt((feats * feats).sum(-1, keepdim=True) + 1e-8)  # (R, D); the published epsilon
    S = z @ z.t()  # (R, R) cosine similarities
    same = y[:, None] == y[None, :]  # (R, R)
    eye = torch.eye(len(y), dtype=torch.bool, device=feats.device)
    pos, neg = same & ~eye, ~same  # (R, R): anchor -> positive, anchor -> negative
    margin = scale * (y[:, None] - y[None, :]).abs()  # (R, R): anchor i vs negative k
    t = torch.relu(margin[:, None, :] - S[:, :, None] + S[:, None, :])  # (R, R_pos, R_neg)
    valid = (pos[:, :, None] & neg[:, None, :]).to(t.dtype)  # (R, R, R)
    count = valid.sum((1, 2))  # (R,) triplets per anchor
    per_anchor = (t * valid).sum((1, 2)) / count.clamp_min(1.0)  # (R,)
    used = (count > 0).to(t.dtype)  # (R,)
    return (per_anchor * used).sum() / used.sum().clamp_min(1.0)


class GDUnit(nn.Module):
    """A graph distillation unit over M modality nodes.

    Each node has a residual-MLP head: ``hidden = ReLU(fc1(x))``, ``r = x + fc2(dropout(hidden))``,
    ``logit = out(r)``; its representation is ``hidden`` (``repr_source="hidden"``, the published homogeneous
    unit) or ``r`` (``"residual"``, the heterogeneous one). Every directed edge (teacher s -> student t) gets a
    score from the [logit; representation] projections of both ends; ``weights = softmax(scores / temperature)``
    over the M(M-1) edges, per sample. With ``w = weights + prior``:

        logit term = logit_weight * sum_e mean_b( w_be * |logit_t - logit_s| )
        repr term  = repr_weight  * sum_e mean_b( max(0, cos(repr_t, repr_s)) ) * mean_b( w_be )
        regulariser = reg_weight  * sum_e ( mean_b weights_be - prior_e )^2

    Teachers are targets (detached). ``loss`` is the sum of the three terms.
    """

    def __init__(self, names: list[str], d: int, gd_size: int, dropout: float, temperature: float = 8.0,
                 prior: Sequence[str] = (), prior_temperature: float = 0.25, reg_weight: float = 10.0,
                 logit_weight: float = 1.0, repr_weight: float = 0.0, repr_source: str = "residual"):
        super().__init__()
        if repr_source not in ("hidden", "residual"):
            raise ConfigError(f"GDUnit: repr_source must be 'hidden' or 'residual'; got {repr_source!r}")
        if not temperature > 0:
            raise ConfigError(f"GDUnit: temperature must be > 0; got {temperature}")
        self.names = names
        self.heads = nn.ModuleDict({m: nn.ModuleDict({
            "fc1": nn.Linear(d, d), "fc2": nn.Linear(d, d), "out": nn.Linear(d, 1)}) for m in names})
        self.drop = nn.Dropout(dropout)
        self.w_logit = nn.Linear(1, gd_size)
        self.w_repr = nn.Linear(d, gd_size)
        self.w_edge = nn.Linear(4 * gd_size, 1)
        self.edges = [(s, t) for t in range(len(names)) for s in range(len(names)) if s != t]  # (teacher, student)
        self.temperature = temperature
        self.reg_weight, self.logit_weight, self.repr_weight = reg_weight, logit_weight, repr_weight
        self.repr_source = repr_source
        named = [(names[s], names[t]) for s, t in self.edges]
        # a fixed function of the config, so it is rebuilt rather than saved
        self.register_buffer("prior", edge_prior(named, prior, prior_temperature), persistent=False)  # (E,)

    def node(self, m: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Residual MLP head: (B, d) -> logit (B,), representation (B, d)."""
        h = self.heads[m]
        hidden = F.relu(h["fc1"](x))  # (B, d)
        r = x + h["fc2"](self.drop(hidden))  # (B, d)
        return h["out"](r).squeeze(-1), hidden if self.repr_source == "hidden" else r

    def edge_weights(self, scores: torch.Tensor) -> torch.Tensor:
        """(B, E) edge scores -> (B, E) weights: softmax over the edges at ``temperature``."""
        return torch.softmax(scores / self.temperature, dim=-1)

    def losses(self, logits: torch.Tensor, reprs: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three terms of the class doc from node logits (B, M), representations (B, M, D) and edge
        weights (B, E); ``loss`` is their sum."""
        teacher = [s for s, _ in self.edges]
        student = [t for _, t in self.edges]
        w = weights + self.prior  # (B, E): the distillation weight of each edge
        dist = (logits[:, student] - logits[:, teacher].detach()).abs()  # (B, E)
        out = {"logit": self.logit_weight * (w * dist).mean(0).sum(),
               "reg": self.reg_weight * ((weights.mean(0) - self.prior) ** 2).sum()}
        if self.repr_weight:
            B = reprs.shape[0]
            target = -torch.ones(B, device=reprs.device)
            cos = torch.stack([F.cosine_embedding_loss(reprs[:, t], reprs[:, s].detach(), target)
                               for s, t in self.edges])  # (E,): mean_b max(0, cos) per edge
            out["repr"] = self.repr_weight * (cos * w.mean(0)).sum()
        else:
            out["repr"] = logits.new_zeros(())
        out["loss"] = out["logit"] + out["repr"] + out["reg"]
        return out

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits, reprs = zip(*(self.node(m, feats[m]) for m in self.names))
        z = [torch.cat([self.w_logit(lg.unsqueeze(-1)), self.w_repr(r)], -1) for lg, r in zip(logits, reprs)]  # (B, 2g)
        # an edge is scored from [student; teacher]
        scores = torch.cat([self.w_edge(torch.cat([z[t], z[s]], -1)) for s, t in self.edges], -1)  # (B, E)
        weights = self.edge_weights(scores)  # (B, E): sums to one over the directed edges
        logits_t, reprs_t = torch.stack(logits, -1), torch.stack(reprs, 1)  # (B, M), (B, M, D)
        return {"logits": logits_t, "reprs": reprs_t, "edge_scores": scores, "edge_weights": weights,
                **self.losses(logits_t, reprs_t, weights)}


@register_head("dmd", DMDConfig, needs=("text",), row=20,
               summary="DMD: modality-shared / -specific decoupling and graph distillation")
class DMD(FusionHead):
    """DMD over a text encoder and (B, T, D) audio [+ vision] features; see the module doc."""

    def __init__(self, cfg: DMDConfig, text_encoder: TextEncoder):
        super().__init__()
        self.cfg = cfg
        self.text_encoder = text_encoder
        self.names = ["T", "A"] + (["V"] if cfg.vision_dim is not None else [])
        d, M = cfg.d, len(self.names)
        n_src = M - 1
        for width in (d, n_src * d):
            if width % cfg.heads:
                raise ConfigError(f"DMDConfig: heads ({cfg.heads}) must divide d ({d}) and (modalities-1)*d "
                                  f"({n_src * d})")
        in_dims = {"T": text_encoder.hidden_size, "A": cfg.audio_dim, "V": cfg.vision_dim}
        kernels = {"T": cfg.kernel_text, "A": cfg.kernel_audio, "V": cfg.kernel_vision}
        self.kernels = {m: kernels[m] for m in self.names}
        self.text_drop = nn.Dropout(cfg.text_dropout)
        self.proj = nn.ModuleDict({m: nn.Conv1d(in_dims[m], d, kernels[m], bias=False) for m in self.names})
        self.private = nn.ModuleDict({m: nn.Conv1d(d, d, 1, bias=False) for m in self.names})
        self.shared = nn.Conv1d(d, d, 1, bias=False)
        self.decoder = nn.ModuleDict({m: nn.Conv1d(2 * d, d, 1, bias=False) for m in self.names})
        self.align = nn.ModuleDict({m: nn.Linear(d, d) for m in self.names})  # shared features for the margin loss
        gd = {"temperature": cfg.gd_temperature, "prior_temperature": cfg.gd_prior_temperature,
              "reg_weight": cfg.gd_reg, "logit_weight": cfg.gd_logit_weight}
        self.homo = GDUnit(self.names, d, cfg.homo_gd_size, cfg.output_dropout, prior=cfg.homo_prior,
                           repr_weight=0.0, repr_source="hidden", **gd)
        # shared stream: a self-attention stack per modality, then one residual-MLP head over the concatenation
        self.shared_attn = nn.ModuleDict({
            m: nn.ModuleList([CrossLayer(d, cfg.heads, cfg.dropout) for _ in range(cfg.shared_layers)])
            for m in self.names})
        self.shared_fc1, self.shared_fc2 = nn.Linear(M * d, M * d), nn.Linear(M * d, M * d)
        self.shared_out = nn.Linear(M * d, 1)
        # heterogeneous path: every directed pair (source -> target) gets its own cross-modal transformer
        self.cross = nn.ModuleDict({
            f"{s}2{t}": nn.ModuleList([CrossLayer(d, cfg.heads, cfg.dropout) for _ in range(cfg.cross_layers)])
            for t in self.names for s in self.names if s != t})
        self.memory = nn.ModuleDict({
            t: nn.ModuleList([CrossLayer(n_src * d, cfg.heads, cfg.dropout) for _ in range(cfg.memory_layers)])
            for t in self.names})
        self.hetero = GDUnit(self.names, n_src * d, cfg.hetero_gd_size, cfg.output_dropout, prior=cfg.hetero_prior,
                             repr_weight=cfg.gd_repr_weight, repr_source="residual", **gd)
        # fusion: sigmoid(Linear) of each enhanced private stream and of the shared concatenation
        self.gate = nn.ModuleDict({m: nn.Linear(n_src * d, n_src * d) for m in self.names})
        self.gate_shared = nn.Linear(M * d, M * d)
        fused = M * n_src * d + M * d
        self.fc1, self.fc2, self.out = nn.Linear(fused, fused), nn.Linear(fused, fused), nn.Linear(fused, 1)
        self.drop = nn.Dropout(cfg.output_dropout)

    def _project(self, m: str, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) -> (B, d, T') with valid lengths T' = max(len - k + 1, 1); short inputs are zero-padded."""
        k = self.kernels[m]
        if x.shape[1] < k:
            x = F.pad(x, (0, 0, 0, k - x.shape[1]))
        y = self.proj[m](x.transpose(1, 2).float())  # (B, d, T')
        new_lens = (lens.to(y.device) - k + 1).clamp(min=1, max=y.shape[-1])
        mask = lengths_to_mask(new_lens, y.shape[-1])  # (B, T')
        return y * mask[:, None].to(y.dtype), mask

    def forward(self, text, audio, audio_lens, vision=None, vision_lens=None, labels=None, index=None) -> FusionOutput:
        cfg = self.cfg
        t_states, t_mask = self.text_encoder(text)  # (B, L, Ht), (B, L)
        inputs = {"T": (self.text_drop(t_states), t_mask.sum(1)), "A": (audio, audio_lens)}
        if "V" in self.names:
            if vision is None:
                raise ValueError("DMD was built with a vision modality but got no vision features")
            inputs["V"] = (vision, vision_lens)
        proj, mask, priv, shar, recon, cyc = {}, {}, {}, {}, {}, {}
        for m in self.names:
            proj[m], mask[m] = self._project(m, *inputs[m])  # (B, d, T'), (B, T')
            mk = mask[m][:, None].to(proj[m].dtype)  # (B, 1, T')
            priv[m] = self.private[m](proj[m]) * mk  # (B, d, T')
            shar[m] = self.shared(proj[m]) * mk  # (B, d, T')
            recon[m] = self.decoder[m](torch.cat([priv[m], shar[m]], 1)) * mk  # (B, d, T')
            cyc[m] = self.private[m](recon[m]) * mk  # (B, d, T')
        seq = {m: priv[m].transpose(1, 2) for m in self.names}  # (B, T', d)
        pooled_priv = {m: masked_mean(seq[m], mask[m]) for m in self.names}  # (B, d)
        pooled_shar = {m: masked_mean(shar[m].transpose(1, 2), mask[m]) for m in self.names}  # (B, d)

        homo = self.homo(pooled_shar)
        shared_states = []
        for m in self.names:
            x = shar[m].transpose(1, 2)  # (B, T', d)
            for layer in self.shared_attn[m]:
                x = layer(x, mask[m])
            shared_states.append(masked_mean(x, mask[m]))  # (B, d)
        c_fusion = torch.cat(shared_states, -1)  # (B, M d)
        c_res = c_fusion + self.shared_fc2(self.drop(F.relu(self.shared_fc1(c_fusion))))  # (B, M d)
        shared_pred = self.shared_out(c_res).squeeze(-1)  # (B,)

        # heterogeneous: target t attends to every other modality s, then a self-attention memory over the concat
        enhanced = {}
        for t in self.names:
            outs = []
            for s in self.names:
                if s == t:
                    continue
                x = seq[t]
                for layer in self.cross[f"{s}2{t}"]:
                    x = layer(x, mask[t], seq[s], mask[s])  # (B, T't, d)
                outs.append(x)
            x = torch.cat(outs, -1)  # (B, T't, (M-1) d)
            for layer in self.memory[t]:
                x = layer(x, mask[t])
            enhanced[t] = masked_mean(x, mask[t])  # (B, (M-1) d)
        hetero = self.hetero(enhanced)

        h = torch.cat([torch.sigmoid(self.gate[m](enhanced[m])) for m in self.names]
                      + [torch.sigmoid(self.gate_shared(c_fusion))], -1)  # (B, M (M-1) d + M d)
        h = h + self.fc2(self.drop(F.relu(self.fc1(h))))  # residual MLP
        pred = self.out(h).squeeze(-1)  # (B,)

        out = FusionOutput(pred=pred, extras={
            "homo_edge_weights": homo["edge_weights"], "hetero_edge_weights": hetero["edge_weights"],
            "homo_prior": self.homo.prior, "hetero_prior": self.hetero.prior, "shared_pred": shared_pred,
            "recon": recon, "proj": proj, "private": pooled_priv, "shared": pooled_shar})
        if labels is None:
            return out
        y = labels.float().to(pred.device)
        M = len(self.names)
        L = {"task": l1(pred, y), "task_shared": l1(shared_pred, y)}
        L["task_homo"] = sum(l1(homo["logits"][:, i], y) for i in range(M))
        L["task_hetero"] = sum(l1(hetero["logits"][:, i], y) for i in range(M))
        L["gd_homo"], L["gd_hetero"] = homo["loss"], hetero["loss"]
        for name, unit in (("homo", homo), ("hetero", hetero)):
            for part in ("logit", "repr", "reg"):
                L[f"gd_{name}_{part}"] = unit[part].detach()  # for logs; the sum above is what trains
        # the published code lets both sides of each MSE learn: the targets are not detached
        L["recon"] = sum(_masked_mse(recon[m], proj[m], mask[m]) for m in self.names)
        L["cycle"] = sum(_masked_mse(cyc[m], priv[m], mask[m]) for m in self.names)
        L["orth"] = sum(orthogonality_loss(pooled_priv[m], pooled_shar[m]) for m in self.names)
        rows = torch.cat([self.align[m](pooled_shar[m]) for m in self.names], 0)  # (M B, d)
        L["margin"] = margin_loss(rows, y.repeat(M), cfg.margin_scale)
        L["total"] = (L["task"] + L["task_shared"] + L["task_homo"] + L["task_hetero"]
                      + cfg.w_homo * L["gd_homo"] + cfg.w_hetero * L["gd_hetero"]
                      + cfg.w_decouple * (L["recon"] + L["cycle"] + cfg.w_inner * (L["margin"] + L["orth"])))
        out.losses = L
        return out


def _masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE between (B, d, T) tensors over valid steps only."""
    m = mask[:, None].to(a.dtype)  # (B, 1, T)
    return (((a - b) ** 2) * m).sum() / (m.sum() * a.shape[1]).clamp_min(1.0)
