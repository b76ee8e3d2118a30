"""DMD (Li et al., CVPR 2023): decoupled multimodal distillation.

Per modality: a temporal Conv1d projection (no bias, no padding) to d; a private encoder per modality and one
shared encoder for all (Conv1d k=1); a decoder Conv1d(2d -> d) on [private; shared] reconstructs the projected
input (MSE), and re-encoding the reconstruction with the private encoder must give the private features back
(cycle MSE). Private and shared features are pushed apart by a soft orthogonality term (cosine embedding loss,
target -1, i.e. max(0, cos)); shared features of all modalities obey a label-margin loss.

Two graph distillation (GD) units: the homogeneous one on the shared features, the heterogeneous one on the
private features after cross-modal transformers (every directed modality pair) and a self-attention memory.
Each GD unit has a per-modality head (logit + representation) and learns one weight per directed edge
(softmax over the edges, per sample) from [logit; representation] projections of both ends; its loss is the
weighted L1 distance of each student's logit to its teacher's logit.

Unaligned, ragged sequences: where the published code flattens a fixed-length sequence, features here are
masked means over valid steps, so any length works; missing modalities (no vision) simply drop out of the
graphs (2 directed edges instead of 6).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import CrossLayer, FusionHead, FusionOutput, TextEncoder, l1, lengths_to_mask, masked_mean


@dataclass
class DMDConfig:
    """DMD sizes (MOSI: d 50, 10 heads, kernels 5/5/5) and loss weights (the published ones)."""

    audio_dim: int = 5  # input audio feature size
    vision_dim: int | None = None  # None = no vision modality
    d: int = 50  # common width after the temporal projections
    heads: int = 10  # attention heads in the cross-modal / memory transformers (d must divide)
    kernel_text: int = 5  # temporal Conv1d kernel per modality (MOSEI uses 5/1/3)
    kernel_audio: int = 5
    kernel_vision: int = 5
    cross_layers: int = 4  # layers per directed cross-modal transformer
    memory_layers: int = 3  # self-attention layers per target modality after the cross-modal ones
    homo_gd_size: int = 64  # edge-scoring width of the homogeneous GD unit
    hetero_gd_size: int = 32  # ... and of the heterogeneous one
    dropout: float = 0.1
    margin_scale: float = 0.15  # label-margin: margin = scale * |y_i - y_j|
    w_homo: float = 0.05  # total = task + w_homo * GD_homo + w_hetero * GD_hetero + w_decouple * (recon + cycle
    w_hetero: float = 0.05  #         + w_inner * (margin + orth))
    w_decouple: float = 0.1
    w_inner: float = 0.1


def orthogonality_loss(private: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
    """Cosine embedding loss with target -1 (margin 0): mean over rows of max(0, cos(private, shared)).

    Zero exactly when every private/shared pair is orthogonal or points away."""
    return F.cosine_embedding_loss(private, shared, -torch.ones(private.shape[0], device=private.device))


def margin_loss(shared: torch.Tensor, sample_id: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """Label-margin loss over the pooled shared features of all modalities (rows = modality x sample).

    For each anchor i, positive j (same sample, other modality: same label) and negative k (other sample):
    max(0, scale * |y_i - y_k| - cos(i, j) + cos(i, k)), averaged over all such triplets. Samples with far apart
    labels must be further apart in the shared space than samples with close labels.
    """
    z = F.normalize(shared, dim=-1)
    S = z @ z.t()  # (R, R) cosine similarities
    same = sample_id[:, None] == sample_id[None, :]  # (R, R)
    eye = torch.eye(len(sample_id), dtype=torch.bool, device=shared.device)
    pos = same & ~eye  # (R, R) anchor -> positive
    neg = ~same  # (R, R) anchor -> negative
    margin = scale * (labels[:, None] - labels[None, :]).abs()  # (R, R): anchor i vs negative k
    # (R, R_pos, R_neg): margin[i,k] - S[i,j] + S[i,k]
    t = torch.relu(margin[:, None, :] - S[:, :, None] + S[:, None, :])
    valid = (pos[:, :, None] & neg[:, None, :]).to(t.dtype)
    return (t * valid).sum() / valid.sum().clamp_min(1.0)


class GDUnit(nn.Module):
    """A graph distillation unit over M modality nodes: per-node head (logit, representation), learned directed
    edge weights (softmax over the M(M-1) edges, per sample), weighted L1 distillation between logits."""

    def __init__(self, names: list[str], d: int, gd_size: int, dropout: float):
        super().__init__()
        self.names = names
        self.heads = nn.ModuleDict({m: nn.ModuleDict({
            "fc1": nn.Linear(d, d), "fc2": nn.Linear(d, d), "out": nn.Linear(d, 1)}) for m in names})
        self.drop = nn.Dropout(dropout)
        self.w_logit = nn.Linear(1, gd_size)
        self.w_repr = nn.Linear(d, gd_size)
        self.w_edge = nn.Linear(4 * gd_size, 1)
        self.edges = [(s, t) for t in range(len(names)) for s in range(len(names)) if s != t]  # (teacher, student)

    def node(self, m: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Residual MLP head: (B, d) -> logit (B,), representation (B, d)."""
        h = self.heads[m]
        r = x + self.h2(h, x)  # (B, d)
        return h["out"](r).squeeze(-1), r

    def h2(self, h, x):
        return h["fc2"](self.drop(F.relu(h["fc1"](x))))

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits, reprs = zip(*(self.node(m, feats[m]) for m in self.names))
        z = [torch.cat([self.w_logit(lg.unsqueeze(-1)), self.w_repr(r)], -1) for lg, r in zip(logits, reprs)]  # (B, 2g)
        scores = torch.cat([self.w_edge(torch.cat([z[t], z[s]], -1)) for s, t in self.edges], -1)  # (B, E)
        weights = torch.softmax(scores, dim=-1)  # (B, E): sums to one over the directed edges
        # the teacher's logit is a target, not pulled towards its student (hence detach)
        dist = torch.stack([(logits[t] - logits[s].detach()).abs() for s, t in self.edges], -1)  # (B, E)
        return {"logits": torch.stack(logits, -1), "reprs": torch.stack(reprs, 1), "edge_weights": weights,
                "loss": (weights * dist).sum(-1).mean()}


class DMD(FusionHead):
    """DMD over a text encoder and (B, T, D) audio [+ vision] features; see the module doc."""

    def __init__(self, cfg: DMDConfig, text_encoder: TextEncoder):
        super().__init__()
        self.cfg = cfg
        self.text_encoder = text_encoder
        self.names = ["T", "A"] + (["V"] if cfg.vision_dim is not None else [])
        d = cfg.d
        in_dims = {"T": text_encoder.hidden_size, "A": cfg.audio_dim, "V": cfg.vision_dim}
        kernels = {"T": cfg.kernel_text, "A": cfg.kernel_audio, "V": cfg.kernel_vision}
        self.kernels = {m: kernels[m] for m in self.names}
        self.proj = nn.ModuleDict({m: nn.Conv1d(in_dims[m], d, kernels[m], bias=False) for m in self.names})
        self.private = nn.ModuleDict({m: nn.Conv1d(d, d, 1, bias=False) for m in self.names})
        self.shared = nn.Conv1d(d, d, 1, bias=False)
        self.decoder = nn.ModuleDict({m: nn.Conv1d(2 * d, d, 1, bias=False) for m in self.names})
        self.homo = GDUnit(self.names, d, cfg.homo_gd_size, cfg.dropout)
        # heterogeneous path: every directed pair (source -> target) gets its own cross-modal transformer
        self.cross = nn.ModuleDict({
            f"{s}2{t}": nn.ModuleList([CrossLayer(d, cfg.heads, cfg.dropout) for _ in range(cfg.cross_layers)])
            for t in self.names for s in self.names if s != t})
        n_src = len(self.names) - 1
        self.memory = nn.ModuleDict({
            t: nn.ModuleList([CrossLayer(n_src * d, cfg.heads, cfg.dropout) for _ in range(cfg.memory_layers)])
            for t in self.names})
        self.hetero_in = nn.ModuleDict({t: nn.Linear(n_src * d, d) for t in self.names})
        self.hetero = GDUnit(self.names, d, cfg.hetero_gd_size, cfg.dropout)
        self.shared_fuse = nn.Linear(len(self.names) * d, d)
        fused = (len(self.names) + 1) * d
        self.gate = nn.Linear(fused, fused)
        self.fc1, self.fc2, self.out = nn.Linear(fused, fused), nn.Linear(fused, fused), nn.Linear(fused, 1)
        self.drop = nn.Dropout(cfg.dropout)

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
        inputs = {"T": (t_states, t_mask.sum(1)), "A": (audio, audio_lens)}
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
            enhanced[t] = self.hetero_in[t](masked_mean(x, mask[t]))  # (B, d)
        hetero = self.hetero(enhanced)

        shared_fused = self.shared_fuse(torch.cat([pooled_shar[m] for m in self.names], -1))  # (B, d)
        h = torch.cat([hetero["reprs"][:, i] for i in range(len(self.names))] + [shared_fused], -1)  # (B, (M+1)d)
        h = h * torch.sigmoid(self.gate(h))  # gated fusion
        h = h + self.fc2(self.drop(F.relu(self.fc1(h))))  # residual MLP
        pred = self.out(h).squeeze(-1)  # (B,)

        out = FusionOutput(pred=pred, extras={
            "homo_edge_weights": homo["edge_weights"], "hetero_edge_weights": hetero["edge_weights"],
            "recon": recon, "proj": proj, "private": pooled_priv, "shared": pooled_shar})
        if labels is None:
            return out
        y = labels.float().to(pred.device)
        L = {"task": l1(pred, y)}
        L["task_homo"] = sum(l1(homo["logits"][:, i], y) for i in range(len(self.names)))
        L["task_hetero"] = sum(l1(hetero["logits"][:, i], y) for i in range(len(self.names)))
        L["gd_homo"], L["gd_hetero"] = homo["loss"], hetero["loss"]
        L["recon"] = sum(_masked_mse(recon[m], proj[m].detach(), mask[m]) for m in self.names)
        L["cycle"] = sum(_masked_mse(cyc[m], priv[m].detach(), mask[m]) for m in self.names)
        L["orth"] = sum(orthogonality_loss(pooled_priv[m], pooled_shar[m]) for m in self.names)
        B = y.shape[0]
        rows = torch.cat([pooled_shar[m] for m in self.names], 0)  # (M B, d)
        ids = torch.arange(B, device=y.device).repeat(len(self.names))  # (M B,)
        L["margin"] = margin_loss(rows, ids, y.repeat(len(self.names)), cfg.margin_scale)
        L["total"] = (L["task"] + L["task_homo"] + L["task_hetero"] + cfg.w_homo * L["gd_homo"]
                      + cfg.w_hetero * L["gd_hetero"]
                      + cfg.w_decouple * (L["recon"] + L["cycle"] + cfg.w_inner * (L["margin"] + L["orth"])))
        out.losses = L
        return out


def _masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE between (B, d, T) tensors over valid steps only."""
    m = mask[:, None].to(a.dtype)  # (B, 1, T)
    return (((a - b) ** 2) * m).sum() / (m.sum() * a.shape[1]).clamp_min(1.0)
