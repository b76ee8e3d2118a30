"""``audiorep extract`` streams: batches by length, writes each batch as it goes, equals the model's own output."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import audiorep
from audiorep.cli import main
from audiorep.commands.extract import length_batches
from audiorep.kernels.fused import CPU_BF16
from audiorep.tensorfile import StreamingSafetensorsWriter


@pytest.fixture
def setup(tmp_path, tiny_model):
    m = tiny_model().eval()
    folder = m.save_pretrained(tmp_path / "tiny")
    rng = np.random.default_rng(0)
    paths = []
    for i, n in enumerate([16000, 4000, 12000, 8000, 12000]):  # 1.0, 0.25, 0.75, 0.5, 0.75 s
        p = tmp_path / f"u{i}.wav"
        sf.write(p, (rng.standard_normal(n) * 0.1).astype("float32"), 16000)
        paths.append(str(p))
    return m, folder, paths


def test_output_equals_the_model_on_each_file_alone(setup, tmp_path):
    m, folder, paths = setup
    out = tmp_path / "feats.safetensors"
    # 1.6 s per batch: [1.0], [0.75, 0.75], [0.5, 0.25] -- padded, mixed-length batches
    assert main(["extract", str(folder), *paths, "--out", str(out), "--batch-seconds", "1.6"]) == 0
    feats = load_file(out)
    assert sorted(feats) == sorted(paths)
    with torch.inference_mode():
        for p in paths:
            ref = torch.stack([h[0] for h in m([audiorep.read_audio(p)[0]]).hidden_states])  # (L+1, T, H)
            assert feats[p].shape == ref.shape
            assert (feats[p] - ref).abs().max() < 1e-5, p
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["format"] == "audiorep-extract" and f.metadata()["skipped"] == "0"


def test_each_batch_is_on_disk_before_the_next_is_computed(setup, tmp_path, monkeypatch):
    _, folder, paths = setup
    out = tmp_path / "feats.safetensors"
    sizes, seen = [], []
    real_add = StreamingSafetensorsWriter.add

    def add(self, name, tensor):
        real_add(self, name, tensor)
        sizes.append(os.path.getsize(self.tmp))  # bytes in the partial file right after this add
        seen.append(out.exists())

    monkeypatch.setattr(StreamingSafetensorsWriter, "add", add)
    assert main(["extract", str(folder), *paths, "--out", str(out), "--layer", "-1", "--batch-seconds", "0.9"]) == 0
    assert len(sizes) == len(paths) and sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert not any(seen)  # the target appears only once complete
    data = sum(t.numel() * 4 for t in load_file(out).values())
    assert out.stat().st_size == sizes[-1] and sizes[-1] - sizes[0] < data


def test_on_error_skip_reports_bad_files_at_the_end(setup, tmp_path, capsys):
    _, folder, paths = setup
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"nope")
    out = tmp_path / "feats.safetensors"
    args = ["extract", str(folder), paths[0], str(bad), str(tmp_path / "gone.wav"), "--out", str(out)]
    assert main(args) == 2 and not out.exists()
    assert "bad.wav" in capsys.readouterr().err
    assert main([*args, "--on-error", "skip"]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 of 3 file(s)" in err and "bad.wav: cannot read audio" in err and "gone.wav: no such" in err
    assert list(load_file(out)) == [paths[0]]
    none = tmp_path / "none.safetensors"
    assert main(["extract", str(folder), str(bad), "--out", str(none), "--on-error", "skip"]) == 2
    assert "no input file could be read" in capsys.readouterr().err and not none.exists()


def test_length_batches_bound_the_padded_seconds():
    durations = {"a": 10.0, "b": 2.0, "c": 4.0, "d": 30.0, "e": 3.0, "f": 3.9}
    batches = length_batches(durations, 9.0)
    assert batches == [["d"], ["a"], ["c", "f"], ["e", "b"]]  # 30 and 10 alone; 2 x 4.0 and 2 x 3.0 <= 9
    assert sorted(sum(batches, [])) == sorted(durations)


def test_streaming_writer_round_trips_and_aborts_cleanly(tmp_path):
    path = tmp_path / "x.safetensors"
    tensors = {"a": torch.randn(3, 5), "b/c.wav": torch.randn(2, 0, 4), "d": torch.randn(4, 7).bfloat16()}
    with StreamingSafetensorsWriter(path, [*tensors, "never"], {"k": "v"}) as w:
        for k, t in tensors.items():
            w.add(k, t)
        with pytest.raises(KeyError, match="already written"):
            w.add("a", tensors["a"])
        w.close()
    back = load_file(path)
    assert set(back) == set(tensors) and all(torch.equal(back[k], t) for k, t in tensors.items())
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"k": "v"}
    with pytest.raises(RuntimeError):
        with StreamingSafetensorsWriter(path, ["z"]) as w:
            w.add("z", torch.ones(2))
            raise RuntimeError("stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.safetensors"]  # old file kept, no partial left
    assert set(load_file(path)) == set(tensors)


@pytest.mark.skipif(not CPU_BF16, reason="oneDNN has no bf16 on this CPU")
def test_bf16_extraction_is_close_to_fp32_and_says_so(setup, tmp_path):
    _, folder, paths = setup
    out32, out16 = tmp_path / "fp32.safetensors", tmp_path / "bf16.safetensors"
    assert main(["extract", str(folder), *paths, "--out", str(out32)]) == 0
    assert main(["extract", str(folder), *paths, "--out", str(out16), "--precision", "bf16"]) == 0
    a, b = load_file(out32), load_file(out16)
    for p in paths:
        assert b[p].dtype == torch.float32 and b[p].shape == a[p].shape
        err = (b[p] - a[p]).abs()
        assert 0 < float(err.max()) < 0.15 and float(err.mean()) < 0.02, p  # bf16 rounding, not a different model
    with safe_open(str(out16), "pt") as f:
        assert f.metadata()["precision"] == "bf16"


def test_bf16_extraction_of_an_fp32_only_upstream_is_one_line():
    from audiorep.commands.extract import _to_bf16
    from audiorep.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--precision bf16: hf:x \(Linear\) runs in fp32 only"):
        _to_bf16(torch.nn.Linear(2, 2), "hf:x")  # an upstream without reduced_precision (e.g. a foreign encoder)


def test_a_file_named_like_the_metadata_key_is_refused_or_kept_as_typed(setup, tmp_path, capsys, monkeypatch):
    _, folder, paths = setup
    monkeypatch.chdir(tmp_path)
    os.replace(paths[1], tmp_path / "__metadata__")
    os.replace(paths[2], tmp_path / "b.wav")
    out = tmp_path / "f.safetensors"
    assert main(["extract", str(folder), "__metadata__", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "./__metadata__" in err and "\n" not in err and not out.exists()
    assert main(["extract", str(folder), "./__metadata__", "./b.wav", "--out", str(out)]) == 0
    assert sorted(load_file(out)) == ["./__metadata__", "./b.wav"]  # the keys are the paths as typed
    assert main(["extract", str(folder), "b.wav", "--out", str(out), "--overwrite"]) == 0  # its own file: replaced
    assert sorted(load_file(out)) == ["b.wav"]
    with pytest.raises(ValueError, match="reserves"):
        StreamingSafetensorsWriter(tmp_path / "x.safetensors", ["__metadata__"])


def test_leftovers_of_a_killed_extract_are_removed_by_the_next_run(setup, tmp_path):
    import subprocess
    import sys

    _, folder, paths = setup
    out = tmp_path / "f.safetensors"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".f.safetensors.{int(gone.stdout)}.abcd1234.part"  # its writer has exited
    live = tmp_path / f".f.safetensors.{os.getppid()}.abcd1234.part"  # a process that still runs
    other = tmp_path / ".notes.txt.123.abcd1234.part"  # not this target's name
    for p in (dead, live, other):
        p.write_bytes(b"x" * 100)
    assert main(["extract", str(folder), paths[0], "--out", str(out)]) == 0
    assert not dead.exists() and live.exists() and other.exists()
    assert not any(p.name.startswith(".f.safetensors.") and p != live for p in tmp_path.iterdir())
