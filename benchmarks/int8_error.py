"""Hidden-state error of int8 inference against eager fp32 on real recordings (the bundled synth corpus).

``python benchmarks/int8_error.py [MODEL_OR_FOLDER ...] [--files N]``: for each model, eager int8
(``weights.export.quantize_int8``, as ``extract --precision int8``) and onnxruntime int8 (``export --quantize
int8``), mean and max abs difference over valid frames, per hidden state, printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch

import audiorep
from audiorep.audio import batch_waveforms
from audiorep.data import get_corpus
from audiorep.weights import export as ex


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", default=["aalbert-base", "tera-base"])
    p.add_argument("--files", type=int, default=24, help="recordings of the synth corpus (sorted by id)")
    p.add_argument("--pretrained", action="store_true", help="published weights (default: random, seed 0)")
    args = p.parse_args()
    torch.set_num_threads(1)
    utts = sorted(get_corpus("synth").utterances(), key=lambda u: u.id)[: args.files]
    wavs, lens = batch_waveforms([audiorep.read_audio(u.path, 16000)[0] for u in utts], None)
    print("| model | runtime | state | mean abs err | max abs err | mean abs fp32 state |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        torch.manual_seed(0)
        model = audiorep.load(name, pretrained=args.pretrained or Path(name).exists())
        with torch.inference_mode():
            ref = model(wavs, lens)
            q = ex.quantize_int8(copy.deepcopy(model))(wavs, lens).hidden_states
        with tempfile.TemporaryDirectory() as tmp:
            sess = ex.onnx_session(ex.export_onnx(model, Path(tmp) / "q.onnx", quantize="int8"), threads=1)
            o = sess.run(None, {"wavs": wavs.numpy(), "wav_lens": lens.numpy()})[:-1]
        keep = torch.arange(ref.hidden_states[0].shape[1])[None, :] < ref.lengths[:, None]  # (B, T)
        for runtime, states in (("eager int8 (torch)", q), ("onnxruntime int8", o)):
            for i, (a, b) in enumerate(zip(ref.hidden_states, states)):
                b = torch.as_tensor(b)[:, : a.shape[1]]
                d = (a - b).abs()[keep]  # (N, H) valid frames
                print(f"| {name} | {runtime} | {i} | {float(d.mean()):.4f} | {float(d.max()):.3f} | "
                      f"{float(a[keep].abs().mean()):.3f} |", flush=True)


if __name__ == "__main__":
    main()
