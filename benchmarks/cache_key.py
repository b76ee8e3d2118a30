"""Cost of the frozen-feature cache key: utterance ids/paths/lengths alone vs. with each file's fingerprint
(size, mtime, sha256 of the first and last 64 KiB). Run: ``PYTHONPATH=. python benchmarks/cache_key.py``."""

from __future__ import annotations

import hashlib
import json
import platform
import time

from audiorep.data import get_corpus
from audiorep.probe.cache import utterance_ident


def _old_ident(utts) -> str:
    h = hashlib.sha256()
    for u in utts:
        h.update(f"{u.id}:{u.path}:{u.num_samples}\n".encode())
    return h.hexdigest()[:16]


def main() -> None:
    corpus = get_corpus("synth")
    utts = [u for s in corpus.splits for u in corpus.manifest(s)]
    size = sum(__import__("os").path.getsize(u.path) for u in utts)
    rows = {}
    for name, fn in (("ids only (before)", _old_ident), ("with fingerprint (now)", utterance_ident)):
        fn(utts)  # warm page cache, as a second run sees it
        t = min(_time(fn, utts) for _ in range(5))
        rows[name] = t
    out = {"corpus": "synth", "files": len(utts), "bytes": size, "seconds": rows, "machine": platform.processor()
           or platform.machine()}
    print(json.dumps(out, indent=2))


def _time(fn, utts) -> float:
    t0 = time.perf_counter()
    fn(utts)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
