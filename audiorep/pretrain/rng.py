"""Counter-based random numbers: the same (key, counter) gives the same number on any device, rank or batch.

Why not ``torch.rand``: a generator's stream depends on how many numbers were drawn before, so an
utterance's mask would change with its position in the batch, with the batch split across DDP ranks,
and with the number of utterances before it. Hashing ``(key, counter)`` makes every utterance's
alteration a pure function of its own key (seed, step, utterance id), so a 2-process run alters exactly
what a 1-process run alters, and a resumed run what an uninterrupted one does, with no generator
state to save.

The mixer is a 32-bit integer finaliser (xor-shift / multiply rounds) evaluated in int64 arithmetic and
masked back to 32 bits, so it is vectorised and identical on CPU and CUDA.
"""

from __future__ import annotations

import zlib

import torch

_M32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """Avalanche a tensor of 32-bit values held in int64 (every input bit flips ~half the output bits)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    x = x ^ (x >> 16)
    return x


def hash_key(*parts: int | torch.Tensor) -> torch.Tensor | int:
    """Combine integers (or int64 tensors, broadcast) into one 32-bit key."""
    h: torch.Tensor | int = 0x9E3779B9
    for p in parts:
        if isinstance(p, torch.Tensor) or isinstance(h, torch.Tensor):
            h = _mix32(torch.as_tensor(h, dtype=torch.int64) ^ (torch.as_tensor(p, dtype=torch.int64) & _M32))
        else:
            h = int(_mix32(torch.tensor((h ^ (int(p) & _M32)), dtype=torch.int64)))
    return h


def string_key(s: str) -> int:
    """A stable 32-bit key for an utterance id (Python's hash() is salted per process, CRC32 is not)."""
    return zlib.crc32(s.encode("utf-8")) & _M32


def random_bits(keys: torch.Tensor, counters: torch.Tensor, stream: int) -> torch.Tensor:
    """32-bit random integers (as int64) for per-row keys (B,) and counters broadcastable to (B, ...).

    ``stream`` separates independent uses (span starts, modes, noise) of the same key.
    """
    k = keys.to(torch.int64).reshape(keys.shape + (1,) * (counters.dim() - 1))  # (B, 1, ...)
    s = _mix32(k ^ ((stream * 0x632BE5AB) & _M32))  # (B, 1, ...)
    return _mix32(s ^ _mix32(counters.to(torch.int64) + 0x5851F42D))  # (B, ...)


def random_uniform(keys: torch.Tensor, counters: torch.Tensor, stream: int) -> torch.Tensor:
    """Floats uniform in [0, 1) (24-bit resolution, float32-exact) for each (key, counter)."""
    return (random_bits(keys, counters, stream) >> 8).to(torch.float32) * (1.0 / (1 << 24))


def random_normal(keys: torch.Tensor, counters: torch.Tensor, stream: int) -> torch.Tensor:
    """Standard normal floats by Box-Muller on two independent uniform streams."""
    u1 = random_uniform(keys, counters, stream)
    u2 = random_uniform(keys, counters, stream + 0x1000)
    r = torch.sqrt(-2.0 * torch.log1p(-u1))  # log1p(-u) is finite: u < 1
    return r * torch.cos(2.0 * torch.pi * u2)
