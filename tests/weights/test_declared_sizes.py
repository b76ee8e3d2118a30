"""Hostile weights files: a config that declares a model far larger than its weights, and a zip checkpoint
whose records declare far more bytes than the file holds. Each must be refused in one line, before the
memory is taken (measured in a child process: its peak RSS)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest
import torch

from audiorep.errors import CheckpointError
from audiorep.weights.s3prl import export_s3prl_checkpoint, load_s3prl_checkpoint

# big enough that building it takes gigabytes (2 layers: 4e8 parameters, 1.6 GB), small enough to try safely
HUGE = dict(hidden=4096, ffn=16384, layers=2)


def huge_folder(root, tiny_model):
    folder = root / "huge"
    tiny_model().save_pretrained(folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["model"].update(hidden_size=HUGE["hidden"], intermediate_size=HUGE["ffn"], num_layers=HUGE["layers"],
                         num_heads=16)
    (folder / "config.json").write_text(json.dumps(meta))
    return folder


def huge_ckpt(root, tiny_model):
    path = root / "huge.ckpt"
    export_s3prl_checkpoint(tiny_model(), path)
    states = torch.load(path, weights_only=False)
    states["Upstream_Config"]["transformer"].update(
        hidden_size=HUGE["hidden"], intermediate_size=HUGE["ffn"], num_hidden_layers=HUGE["layers"],
        num_attention_heads=16)
    torch.save(states, path)
    return path


def huge_hf_folder(root):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, num_conv_pos_embeddings=16,
                                      num_conv_pos_embedding_groups=2, conv_dim=(16, 16, 16), conv_stride=(5, 8, 8),
                                      conv_kernel=(10, 8, 8))
    folder = root / "w2v"
    transformers.Wav2Vec2Model(cfg).save_pretrained(str(folder))
    meta = json.loads((folder / "config.json").read_text())
    meta.update(hidden_size=HUGE["hidden"], intermediate_size=HUGE["ffn"], num_hidden_layers=HUGE["layers"],
                num_attention_heads=16)
    (folder / "config.json").write_text(json.dumps(meta))
    return folder


CHILD = """
import resource, sys
import audiorep
import transformers.models.wav2vec2.modeling_wav2vec2  # what an hf: load imports, so the baseline includes it
from audiorep.errors import AudiorepError
print("BASE_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
for source in sys.argv[1:]:
    try:
        audiorep.load(source)
        print("LOADED", source)
    except AudiorepError as exc:
        print("ERROR", str(exc).replace("\\n", " | "))
print("MAXRSS_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_declared_sizes_are_checked_against_the_weights_before_allocating(tmp_path, tiny_model):
    sources = [str(huge_folder(tmp_path, tiny_model)), str(huge_ckpt(tmp_path, tiny_model)),
               f"hf:{huge_hf_folder(tmp_path)}"]
    out = subprocess.run([sys.executable, "-c", CHILD, *sources], capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stderr[-2000:]
    errors = [line for line in lines if line.startswith("ERROR")]
    assert len(errors) == 3, lines
    assert "huge/model.safetensors" in errors[0] and "do not match the config" in errors[0], errors[0]
    assert "huge.ckpt" in errors[1] and "expected (4096, 4096) for hidden_size 4096" in errors[1], errors[1]
    assert "w2v" in errors[2] and "declares" in errors[2], errors[2]
    base = int(next(line for line in lines if line.startswith("BASE_MB")).split()[1])
    rss = int(lines[-1].split()[1])
    # the declared models need 12-60 GB; refusing them may cost a header read and a meta-device build, not that.
    # Bounded as growth over the process after its imports, which vary with the installed extras.
    assert rss - base < 400, f"peak RSS {rss} MB after {base} MB of imports"


def test_hf_config_beyond_the_parameter_cap_is_refused_without_weights(tmp_path):
    import audiorep

    folder = huge_hf_folder(tmp_path)
    meta = json.loads((folder / "config.json").read_text())
    meta.update(hidden_size=16384, intermediate_size=65536, num_hidden_layers=4)  # 1.5e10 parameters
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"declares .* parameters"):
        audiorep.load(f"hf:{folder}", pretrained=False)


def _deflated_copy(src, dst, inflate_to: int):
    """``src`` (a torch zip) with its first data record replaced by ``inflate_to`` zero bytes, deflated."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if "/data/" in info.filename and inflate_to:
                zout.writestr(info.filename, bytes(inflate_to), compress_type=zipfile.ZIP_DEFLATED,
                              compresslevel=9)
                inflate_to = 0
            else:
                zout.writestr(info, data)


def test_zip_bomb_checkpoint_is_refused_before_reading(tmp_path, tiny_model):
    src = tmp_path / "tiny.ckpt"
    export_s3prl_checkpoint(tiny_model(), src)
    bomb = tmp_path / "bomb.ckpt"
    _deflated_copy(src, bomb, 200 << 20)  # 200 MB of zeros in about 200 kB
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(CheckpointError, match=r"bomb\.ckpt: its zip records declare .* MB uncompressed"):
        load_s3prl_checkpoint(bomb)
    load_s3prl_checkpoint(src)  # a torch.save file passes
