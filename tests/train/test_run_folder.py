"""Run folders: one run at a time, resume that survives a bad newest checkpoint, no litter, no lost files."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from audiorep.cli import main
from audiorep.ownership import MARKER
from audiorep.errors import BusyError, ConfigError, StorageError
from audiorep.locking import RUN_LOCK_NAME, lock_run_folder
from audiorep.pretrain.config import load_config
from audiorep.pretrain.run import pretrain, resolve_utterances
from audiorep.train.checkpoint import CheckpointManager

TINY = ["model.hidden_size=16", "model.num_heads=2", "model.intermediate_size=32", "model.num_layers=1",
        "data.num_workers=0", "train.progress=false", "train.log_every=1", "data.batch_size=4",
        "data.eval_split=null"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """8 short noise files and their manifest (named unlike any split: any name must do)."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    with open(root / "my-data.jsonl", "w") as f:
        for i in range(8):
            n = int(16000 * rng.uniform(0.2, 0.4))
            sf.write(root / f"u{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
            f.write(json.dumps({"id": f"u{i}", "path": f"u{i}.wav", "num_samples": n, "sample_rate": 16000,
                                "speaker": "s"}) + "\n")
    (root / "empty.yaml").write_text("{}\n")
    return root / "my-data.jsonl"


def _cfg(manifest, out, *extra):
    return load_config(None, TINY + [f"data.train={manifest}", f"out_dir={out}", *extra])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _hold_lock_in_another_process(folder: Path, name: str = RUN_LOCK_NAME) -> subprocess.Popen:
    """Another process holding the run lock the way audiorep.locking takes it (flock + pid), without the
    seconds an ``import audiorep`` (torch) costs."""
    code = ("import fcntl, os, sys; os.makedirs(sys.argv[1], exist_ok=True); "
            f"fd = os.open(os.path.join(sys.argv[1], {name!r}), os.O_RDWR | os.O_CREAT, 0o666); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); os.write(fd, b'%d\\n' % os.getpid()); "
            "print('locked', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("command", ["pretrain", "downstream"])
def test_a_second_run_into_a_busy_folder_fails_at_once(manifest, tmp_path, capsys, command):
    out = tmp_path / "run"
    holder = _hold_lock_in_another_process(out)
    try:
        if command == "pretrain":
            argv = ["pretrain", "--config", str(manifest.parent / "empty.yaml"), "--data", str(manifest), "--out", str(out), *TINY]
        else:
            argv = ["downstream", "--task", "speaker", "--upstream", "logmel", "--data", str(manifest.parent),
                    "--out", str(out), "--no-progress"]
        assert main(argv) == 2
        line = _one_line_error(capsys)
        assert f"{out}: another audiorep run (pid {holder.pid}) is using this folder" in line
        assert sorted(p.name for p in out.iterdir()) == [RUN_LOCK_NAME]  # nothing was written
    finally:
        holder.communicate("")
    lock = lock_run_folder(out)  # the holder's exit released it
    lock.release()


def test_teasel_and_sentiment_runs_refuse_a_busy_folder(tmp_path, capsys):
    """TEASEL runs lock their folder; fusion runs lock their head's result file (heads may share a folder)."""
    out = tmp_path / "run"
    holder = _hold_lock_in_another_process(out)
    try:
        assert main(["teasel", "finetune", f"out_dir={out}", "epochs=1"]) == 2
        assert f"{out}: another audiorep run (pid {holder.pid}) is using this folder" in _one_line_error(capsys)
    finally:
        holder.communicate("")
    holder = _hold_lock_in_another_process(out, ".dmd.lock")
    try:
        assert main(["sentiment", "train", "--head", "dmd", f"out_dir={out}", "epochs=1"]) == 2
        assert f"another run of head 'dmd' (pid {holder.pid}) is writing dmd.json" in _one_line_error(capsys)
    finally:
        holder.communicate("")
    assert sorted(p.name for p in out.iterdir()) == sorted([".dmd.lock", RUN_LOCK_NAME])  # nothing else written


def test_resume_falls_back_to_the_previous_intact_checkpoint(manifest, tmp_path, caplog):
    common = ["train.max_steps=4", "train.ckpt_every=1", "train.keep_last=3"]  # unfinished: no export
    full = pretrain(_cfg(manifest, tmp_path / "full", *common), step_budget=3)
    pretrain(_cfg(manifest, tmp_path / "part", *common), step_budget=2)
    newest = tmp_path / "part" / "checkpoints" / "step-00000002.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a copy cut short
    rest = pretrain(_cfg(manifest, tmp_path / "part", *common), resume=True, step_budget=1)
    assert [l.step for l in rest.logs] == [2]  # resumed after step 1
    assert [l.loss for l in rest.logs] == [l.loss for l in full.logs][1:2]
    assert "step-00000002.pt: cannot read training checkpoint" in caplog.text


def test_resume_into_a_folder_without_checkpoints_is_refused(manifest, tmp_path, capsys):
    with pytest.raises(ConfigError, match="holds no checkpoint to resume from"):
        pretrain(_cfg(manifest, tmp_path / "empty", "train.max_steps=1"), resume=True)
    assert main(["pretrain", "--config", str(manifest.parent / "empty.yaml"), "--data", str(manifest), "--out", str(tmp_path / "e2"),
                 "--resume", *TINY, "train.max_steps=1"]) == 2
    assert "--resume, but the folder holds no checkpoint" in _one_line_error(capsys)
    assert not (tmp_path / "e2" / "metrics.csv").exists()


def test_temp_files_of_killed_writes_are_cleaned_and_others_kept(manifest, tmp_path):
    run = tmp_path / "run"
    pretrain(_cfg(manifest, run, "train.max_steps=2"), step_budget=1)
    stale = [run / "checkpoints" / ".step-00000002.pt.a1b2c3d4.tmp", run / ".config.yaml.zz9_zz9z.tmp"]
    for p in stale:
        p.write_bytes(b"half a write")
    mine = [run / "notes.tmp", run / "checkpoints" / ".hidden"]
    for p in mine:
        p.write_text("user data")
    pretrain(_cfg(manifest, run, "train.max_steps=2"), resume=True)
    assert not any(p.exists() for p in stale)
    assert all(p.read_text() == "user data" for p in mine)


def test_a_full_disk_during_a_checkpoint_write_is_one_line(manifest, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_fsync = os.fsync

    def fsync(fd):
        if ".step-00000002.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code = main(["pretrain", "--config", str(manifest.parent / "empty.yaml"), "--data", str(manifest), "--out", str(out), *TINY,
                 "train.max_steps=3", "train.ckpt_every=1"])
    line = _one_line_error(capsys)
    assert code == 2
    assert line == (f"audiorep pretrain: error: {out / 'checkpoints' / 'step-00000002.pt'}: cannot write "
                    "(No space left on device); free some space and run again (--resume continues a run)")
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name != MARKER) == ["step-00000001.pt"]  # no temp file
    CheckpointManager.load(out / "checkpoints" / "step-00000001.pt")  # the earlier one is intact


def test_storage_errors_name_the_file(tmp_path):
    from audiorep.fileio import atomic_write_bytes

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(StorageError, match=f"{ro / 'x.bin'}: cannot write \\(Permission denied\\)"):
            atomic_write_bytes(ro / "x.bin", b"1")
    finally:
        ro.chmod(0o700)


def test_run_files_follow_the_umask(manifest, tmp_path):
    old = os.umask(0o022)
    try:
        res = pretrain(_cfg(manifest, tmp_path / "run", "train.max_steps=1"))
    finally:
        os.umask(old)
    modes = {str(p.relative_to(res.run_dir)): p.stat().st_mode & 0o777
             for p in Path(res.run_dir).rglob("*") if p.is_file()}
    assert modes and all(m == 0o644 for m in modes.values()), modes


def test_busy_error_is_a_library_error():
    from audiorep.errors import AudiorepError

    assert issubclass(BusyError, AudiorepError) and issubclass(StorageError, OSError)


def test_overrides_may_come_after_options(manifest, tmp_path):
    out = tmp_path / "split"
    assert main(["pretrain", "--config", str(manifest.parent / "empty.yaml"), "train.max_steps=1", "--out", str(out), "train.seed=7",
                 "--data", str(manifest), *TINY]) == 0
    cfg = (out / "config.yaml").read_text()
    assert "max_steps: 1" in cfg and "seed: 7" in cfg
    with pytest.raises(SystemExit):
        main(["pretrain", "--config", str(manifest.parent / "empty.yaml"), "--out", str(out), "--bogus"])


def test_data_may_be_any_manifest_file_name(manifest, tmp_path):
    res = pretrain(_cfg(manifest, tmp_path / "any", "train.max_steps=1"))
    assert res.step == 1
    assert torch.load(Path(res.run_dir) / "checkpoints" / "step-00000001.pt", weights_only=True)["step"] == 1


def test_overwrite_keeps_user_files_in_checkpoints(manifest, tmp_path):
    out = tmp_path / "r"
    pretrain(_cfg(manifest, out, "train.max_steps=2", "train.ckpt_every=1"))
    (out / "checkpoints" / "README.txt").write_text("keep")
    pretrain(_cfg(manifest, out, "train.max_steps=2", "train.ckpt_every=1"), overwrite=True)
    assert (out / "checkpoints" / "README.txt").read_text() == "keep"
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*.pt")) == ["step-00000001.pt", "step-00000002.pt"]


def test_resume_refuses_a_changed_optimiser_setting_and_records_allowed_changes(manifest, tmp_path):
    out = tmp_path / "r"
    pretrain(_cfg(manifest, out, "train.max_steps=3", "train.ckpt_every=1"), step_budget=2)
    with pytest.raises(ConfigError, match=r"changed settings: optim\.lr 0\.0002 -> 0\.5;") as e:
        pretrain(_cfg(manifest, out, "train.max_steps=3", "optim.lr=0.5"), resume=True)
    assert "\n" not in str(e.value)
    assert yaml.safe_load((out / "config.yaml").read_text())["optim"]["lr"] == 0.0002  # still what ran
    res = pretrain(_cfg(manifest, out, "train.max_steps=4", "train.ckpt_every=2"), resume=True)
    assert res.step == 4
    saved = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert saved["max_steps"] == 4 and saved["ckpt_every"] == 2  # config.yaml says what ran


def _libri(root: Path, speaker: str) -> Path:
    chap = root / "train-clean-100" / speaker / "1"
    chap.mkdir(parents=True)
    sf.write(chap / f"{speaker}-1-0000.flac", np.zeros(8000, dtype=np.float32), 16000)
    (chap / f"{speaker}-1.trans.txt").write_text(f"{speaker}-1-0000 HELLO\n")
    return root


def test_the_librispeech_scan_cache_follows_the_data(tmp_path):
    a, b = _libri(tmp_path / "libA", "11"), _libri(tmp_path / "libB", "22")
    out = tmp_path / "r"
    first = resolve_utterances(load_config(None, TINY + [f"data.train={a}", f"out_dir={out}"]), out)
    second = resolve_utterances(load_config(None, TINY + [f"data.train={b}", f"out_dir={out}"]), out)
    assert [u.id for u in first] == ["11-1-0000"] and [u.id for u in second] == ["22-1-0000"]


def test_a_blocked_final_folder_fails_before_training(manifest, tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "final").write_text("a file where the model folder goes")
    assert main(["pretrain", "--config", str(_yaml(tmp_path)), "--data", str(manifest), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "final" in err and "\n" not in err
    assert not (out / "checkpoints").exists() and not (out / "metrics.csv").exists()  # nothing trained


def test_a_run_folder_name_too_long_fails_in_one_line(manifest, tmp_path, capsys):
    out = tmp_path / ("x" * 250) / ("y" * 260)
    assert main(["pretrain", "--config", str(_yaml(tmp_path)), "--data", str(manifest), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "allows" in err and "\n" not in err


def test_downstream_cache_dir_and_probe_table_out_blocked_by_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["downstream", "--task", "speaker", "--feature-cache", str(f), "--out", str(tmp_path / "r")]) == 2
    assert "--feature-cache" in capsys.readouterr().err
    assert main(["downstream", "probe-table", "--models", "a=logmel", "--out", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a folder" in err and "\n" not in err


def test_the_summary_names_loss_png_only_when_it_was_written(manifest, tmp_path, capsys, monkeypatch):
    import audiorep.train.metrics as metrics

    monkeypatch.setattr(metrics, "pyplot", lambda: None)  # the README's install: no matplotlib
    out = tmp_path / "r"
    assert main(["pretrain", "--config", str(_yaml(tmp_path)), "--data", str(manifest), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "see metrics.csv)" in err and "loss.png" not in err and not (out / "loss.png").exists()


def _yaml(tmp_path: Path) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"model": {"hidden_size": 16, "num_heads": 2, "intermediate_size": 32,
                                           "num_layers": 1},
                                 "train": {"max_steps": 2, "log_every": 1, "progress": False},
                                 "data": {"batch_size": 4, "num_workers": 0, "eval_split": None}}))
    return p
