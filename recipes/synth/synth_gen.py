"""Generate the bundled speech corpus with festival, flite and sox (recipe: recipes/make_synth_corpus.sh).

``python recipes/synth/synth_gen.py --out DIR [--seed 0] [--utts-per-speaker 32] [--jobs 2] [--format ogg]``

Speakers are base voices (festival kal/ked diphone voices; flite awb/rms/slt/kal16) times variants: a
``sox speed`` factor (moves formants and pitch together, like a longer/shorter vocal tract; phone times are
divided by it exactly), a ``sox pitch`` shift in cents (keeps the length) and a speaking-rate factor given
to the synthesizer's own duration model. Each utterance is also spoken in a *style* (emphatic / neutral /
flat: rate, pitch range, level) that enters its sentiment label (:func:`synth_text.sentiment_score`).

Phone labels come from the synthesizer's own segment end times (festival ``utt.save.segs``, flite
``-psdur``), scaled by the speed factor, sampled at 10 ms frame centres (frame ``t`` at ``t * 160``
samples, ``T = S // 160 + 1`` frames, as the feature front end makes) and mapped to the 41-class set in
:data:`PHONES`. This script needs the synthesizers; it lives beside the recipes, not in the installed package
(only the corpus it writes ships, under ``audiorep/data/synth/``).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from audiorep.data.labels import num_frames, write_frame_labels, write_label_names
from audiorep.data.manifest import Utterance, write_manifest
from synth_text import (  # beside this script: run as a script, its folder is on sys.path
    STYLE_F0_RANGE,
    STYLE_GAIN_DB,
    STYLE_RATE,
    STYLES,
    make_sentence,
    sentiment_score,
)

SAMPLE_RATE = 16000
HOP = 160
# libsndfile Vorbis compression level (quality = 1 - level): ~7.8 KB/s on this speech; CMVN log-mel features
# differ from the lossless ones by 0.083 on average, frame cosine 0.95 (unit-variance features, 66 utterances;
# recipes/synth_corpus_checks.py --codec)
OGG_LEVEL = 0.3

# 39 ARPAbet phonemes (no stress) + schwa "ax" kept apart (the synthesizers use it a lot) + silence = 41
PHONES = [
    "sil", "aa", "ae", "ah", "ao", "aw", "ax", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g", "hh",
    "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th", "uh", "uw", "v",
    "w", "y", "z", "zh",
]
# synthesizer (CMU radio) phones that are not in PHONES, folded as TIMIT-style 39-phone sets do
PHONE_FOLD = {
    "pau": "sil", "h#": "sil", "brth": "sil", "#": "sil", "ssil": "sil",
    "axr": "er", "ix": "ih", "dx": "t", "nx": "n", "el": "l", "em": "m", "en": "n", "hv": "hh",
}

# base voices: (engine, voice, F0 mean Hz, F0 std Hz) — F0 values only steer the style's pitch range
VOICES = [
    ("festival", "kal_diphone", 105.0, 14.0),
    ("festival", "ked_diphone", 110.0, 15.0),
    ("flite", "awb", 110.0, 16.0),
    ("flite", "rms", 100.0, 14.0),
    ("flite", "slt", 170.0, 25.0),
    ("flite", "kal16", 105.0, 14.0),
]
# speaker variants of every base voice: (sox speed factor, sox pitch cents, speaking-rate factor)
VARIANTS = [
    (1.00, 0, 1.00),
    (0.92, 300, 1.05),
    (1.08, -300, 0.95),
    (0.95, -200, 1.03),
    (1.05, 200, 0.97),
]


@dataclass
class Speaker:
    """How one synthetic speaker is made."""

    name: str  # "spk01" ...
    engine: str  # "festival" or "flite"
    voice: str  # the engine's voice name
    speed: float  # sox speed factor: formants, pitch and rate together; phone times / speed
    pitch_cents: int  # sox pitch shift after speed (length unchanged)
    rate: float  # synthesizer duration stretch of this speaker (>1 slower)
    f0_mean: float  # Hz, the base voice's mean F0 as handed to the synthesizer
    f0_std: float  # Hz, the base voice's F0 spread; styles scale it


def make_speakers() -> list[Speaker]:
    """All voices x variants, numbered spk01.. in a fixed order."""
    out = []
    for v, (engine, voice, f0m, f0s) in enumerate(VOICES):
        for k, (speed, cents, rate) in enumerate(VARIANTS):
            out.append(Speaker(f"spk{len(out) + 1:02d}", engine, voice, speed, cents, rate, f0m, f0s))
    return out


def fold_phone(p: str) -> int:
    """Index in PHONES of a synthesizer phone; ValueError for one the map does not know."""
    p = PHONE_FOLD.get(p, p)
    if p not in PHONES:
        raise ValueError(f"synthesizer phone {p!r} is not in the phone map")
    return PHONES.index(p)


def frame_labels(segments: list[tuple[str, float]], n_samples: int, scale: float) -> list[int]:
    """Class per 10 ms frame from ``(phone, end_time_s)`` segments whose times are multiplied by ``scale``.

    Frame ``t`` is labelled with the phone whose interval holds its centre ``t * HOP`` samples; frames past
    the last end time (trailing silence the synthesizer adds) take the last phone.
    """
    ends = np.array([e * scale * SAMPLE_RATE for _, e in segments])
    ids = [fold_phone(p) for p, _ in segments]
    T = num_frames(n_samples, HOP)
    centres = np.arange(T) * HOP
    k = np.searchsorted(ends, centres, side="right").clip(max=len(ids) - 1)
    return [ids[j] for j in k]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({res.returncode}): {res.stderr[-800:]}")
    return res


def _festival_batch(spk: Speaker, jobs: list[tuple[str, str, str]], tmp: Path) -> dict[str, tuple[Path, list]]:
    """Synthesize (utt_id, text, style) with one festival process; returns raw wav path and segments."""
    lines = [f"(voice_{spk.voice})", "(set! audiorep_base_lr int_lr_params)",
             "(define (audiorep_f0 mean std) (set! int_lr_params (list (list 'target_f0_mean mean) "
             "(list 'target_f0_std std) (list 'model_f0_mean 170) (list 'model_f0_std 34))))"]
    for utt_id, text, style in jobs:
        stretch = spk.rate * STYLE_RATE[style]
        std = spk.f0_std * STYLE_F0_RANGE[style]
        safe = text.replace("\\", " ").replace('"', " ")
        lines += [
            f"(Parameter.set 'Duration_Stretch {stretch:.4f})",
            f"(audiorep_f0 {spk.f0_mean:.1f} {std:.2f})",
            f'(set! utt (Utterance Text "{safe}"))',
            "(utt.synth utt)",
            f'(utt.save.wave utt "{tmp / (utt_id + ".raw.wav")}" \'riff)',
            f'(utt.save.segs utt "{tmp / (utt_id + ".segs")}")',
        ]
    script = tmp / f"{spk.name}.scm"
    script.write_text("\n".join(lines) + "\n")
    _run(["festival", "-b", str(script)], timeout=1800)
    out = {}
    for utt_id, _, _ in jobs:
        segs = []
        for line in (tmp / (utt_id + ".segs")).read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] != "#":
                segs.append((parts[2], float(parts[0])))
        out[utt_id] = (tmp / (utt_id + ".raw.wav"), segs)
    return out


def _flite_one(spk: Speaker, utt_id: str, text: str, style: str, tmp: Path) -> tuple[Path, list]:
    raw = tmp / (utt_id + ".raw.wav")
    res = _run([
        "flite", "-voice", spk.voice,
        "--setf", f"duration_stretch={spk.rate * STYLE_RATE[style]:.4f}",
        "--setf", f"int_f0_target_mean={spk.f0_mean:.1f}",
        "--setf", f"int_f0_target_stddev={spk.f0_std * STYLE_F0_RANGE[style]:.2f}",
        "-psdur", "-t", text, "-o", str(raw),
    ], timeout=120)
    segs = []
    for tok in res.stdout.split():
        phone, _, end = tok.rpartition(":")
        segs.append((phone, float(end)))
    return raw, segs


def _speaker_utterances(spk: Speaker, n: int, seed: int) -> list[dict]:
    """Texts, styles and labels of one speaker: seeded by (seed, speaker), balanced over styles."""
    rng = random.Random(f"audiorep-synth:{seed}:{spk.name}")
    styles = [STYLES[i % len(STYLES)] for i in range(n)]
    rng.shuffle(styles)
    out = []
    for i in range(n):
        sent = make_sentence(rng)
        out.append({
            "id": f"{spk.name}-{i:03d}", "text": sent.text, "style": styles[i], "polarity": sent.polarity,
            "sentiment": sentiment_score(sent.polarity, styles[i]),
        })
    return out


def synth_speaker(spk: Speaker, n: int, seed: int, out_dir: str, fmt: str) -> tuple[list[dict], dict]:
    """Make all utterances of one speaker; returns manifest rows (as dicts) and frame labels."""
    import soundfile as sf

    plan = _speaker_utterances(spk, n, seed)
    audio_dir = Path(out_dir) / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows, labels = [], {}
    with tempfile.TemporaryDirectory(prefix=f"audiorep-{spk.name}-") as td:
        tmp = Path(td)
        if spk.engine == "festival":
            raw = _festival_batch(spk, [(p["id"], p["text"], p["style"]) for p in plan], tmp)
        else:
            raw = {p["id"]: _flite_one(spk, p["id"], p["text"], p["style"], tmp) for p in plan}
        for p in plan:
            raw_wav, segs = raw[p["id"]]
            if not segs:
                raise RuntimeError(f"{spk.name} {p['id']}: the synthesizer gave no phone timings")
            mod = tmp / (p["id"] + ".wav")
            # -R -D: repeatable, no dither, so the same seed gives the same samples
            _run(["sox", "-R", "-D", str(raw_wav), "-b", "16", "-c", "1", str(mod),
                  "speed", f"{spk.speed}", "pitch", f"{spk.pitch_cents}", "rate", "-v", str(SAMPLE_RATE),
                  "gain", "-n", f"{-6 + STYLE_GAIN_DB[p['style']]:.1f}"])
            wav, sr = sf.read(mod, dtype="float32")
            assert sr == SAMPLE_RATE
            labels[p["id"]] = frame_labels(segs, len(wav), 1.0 / spk.speed)
            # flite's diphone voice cuts the final pause short and festival adds a few tens of ms after
            # it: both are silence. The last spoken phone must end inside the audio, though.
            seg_end = segs[-1][1] / spk.speed * SAMPLE_RATE
            spoken = [e for ph, e in segs if fold_phone(ph) != 0]
            speech_end = (spoken[-1] if spoken else 0.0) / spk.speed * SAMPLE_RATE
            if speech_end > len(wav) + 2 * HOP or len(wav) > seg_end + 10 * HOP:
                raise RuntimeError(
                    f"{p['id']}: speech ends at {speech_end:.0f} samples, segments at {seg_end:.0f}, "
                    f"but the audio has {len(wav)}"
                )
            ext = "flac" if fmt == "flac" else "ogg"
            dest = audio_dir / f"{p['id']}.{ext}"
            if fmt == "flac":
                sf.write(dest, wav, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            else:
                sf.write(dest, wav, SAMPLE_RATE, format="OGG", subtype="VORBIS", compression_level=OGG_LEVEL)
            n_read = sf.info(dest).frames
            rows.append({
                "id": p["id"], "path": f"audio/{dest.name}", "num_samples": int(n_read),
                "sample_rate": SAMPLE_RATE, "speaker": spk.name, "text": p["text"],
                "labels": {"sentiment": p["sentiment"], "lexical_polarity": p["polarity"], "style": p["style"]},
            })
    return rows, labels


def split_corpus(rows: list[dict], speakers: list[Speaker], seed: int) -> dict[str, list[dict]]:
    """Splits by utterance (75/12.5/12.5 per speaker) and by speaker (per base voice: 3 train, 1 dev, 1 test)."""
    rng = random.Random(f"audiorep-split:{seed}")
    by_spk: dict[str, list[dict]] = {}
    for r in rows:
        by_spk.setdefault(r["speaker"], []).append(r)
    splits: dict[str, list[dict]] = {k: [] for k in ("train", "dev", "test", "spk_train", "spk_dev", "spk_test")}
    for spk in sorted(by_spk):
        utts = sorted(by_spk[spk], key=lambda r: r["id"])
        rng.shuffle(utts)
        n_eval = max(1, round(len(utts) / 8))
        splits["dev"] += utts[:n_eval]
        splits["test"] += utts[n_eval : 2 * n_eval]
        splits["train"] += utts[2 * n_eval :]
    voices: dict[str, list[str]] = {}
    for s in speakers:
        if s.name in by_spk:
            voices.setdefault(f"{s.engine}:{s.voice}", []).append(s.name)
    for names in voices.values():
        names = sorted(names)
        rng.shuffle(names)
        roles = ["spk_dev", "spk_test"] + ["spk_train"] * max(0, len(names) - 2) if len(names) >= 3 else ["spk_train"] * len(names)
        for name, role in zip(names, roles):
            splits[role] += sorted(by_spk[name], key=lambda r: r["id"])
    for k in splits:
        splits[k].sort(key=lambda r: r["id"])
    return splits


def _rows_to_utts(rows: list[dict], root: Path) -> list[Utterance]:
    return [Utterance(**{**r, "path": str(root / r["path"])}) for r in rows]


def generate(out: Path, seed: int = 0, utts_per_speaker: int = 22, jobs: int = 2, fmt: str = "ogg",
             max_speakers: int | None = None) -> dict:
    """Write the corpus folder ``out``; returns its summary. Needs festival, flite and sox on PATH."""
    for tool in ("festival", "flite", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install festival festvox-kallpc16k festvox-kdlpc16k flite sox")
    speakers = make_speakers()[: max_speakers or None]
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    labels: dict[str, list[int]] = {}
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futs = [pool.submit(synth_speaker, s, utts_per_speaker, seed, str(out), fmt) for s in speakers]
        for s, f in zip(speakers, futs):
            r, lab = f.result()
            rows += r
            labels.update(lab)
            print(f"{s.name} {s.engine}:{s.voice} done ({len(r)} utterances)", file=sys.stderr, flush=True)
    rows.sort(key=lambda r: r["id"])
    for name, part in split_corpus(rows, speakers, seed).items():
        write_manifest(_rows_to_utts(part, out.resolve()), out / f"{name}.jsonl")
    write_frame_labels({k: labels[k] for k in sorted(labels)}, out / "converted_aligned_phones.txt")
    write_label_names(PHONES, out / "phones.txt")
    summary = {
        "seed": seed, "format": fmt, "sample_rate": SAMPLE_RATE, "hop_length": HOP,
        "speakers": [asdict(s) for s in speakers], "utterances": len(rows),
        "seconds": round(sum(r["num_samples"] for r in rows) / SAMPLE_RATE, 2),
        "phone_classes": len(PHONES),
    }
    (out / "corpus.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="corpus folder to write")
    p.add_argument("--seed", type=int, default=0, help="seeds texts, styles and splits")
    p.add_argument("--utts-per-speaker", type=int, default=22)
    p.add_argument("--max-speakers", type=int, default=None, help="first N speakers only (for trying out)")
    p.add_argument("--jobs", type=int, default=2, help="parallel synthesizer processes (CPU is shared)")
    p.add_argument("--format", choices=["ogg", "flac"], default="ogg",
                   help="ogg (Vorbis, ~5x smaller) or flac (lossless)")
    a = p.parse_args(argv)
    s = generate(a.out, a.seed, a.utts_per_speaker, a.jobs, a.format, a.max_speakers)
    print(json.dumps({k: v for k, v in s.items() if k != "speakers"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
