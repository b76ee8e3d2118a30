"""The README is a contract: every command in its code blocks runs as written.

Each fenced block is run in a scratch copy of the repository's working directory layout (the repository root
as the current folder, outputs under a temporary folder): ``python`` blocks as one script, ``bash`` blocks
line by line. Install lines (``pip install ...``) are what CI itself runs in fresh environments, so here only
the part after ``&&`` runs. Long runs get small overrides appended (fewer steps), listed in ``SHORTER`` by the
command they shorten: the command itself is never rewritten, so a renamed flag or a missing file in the
README still fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# command prefix -> what is appended so the run takes seconds (same code paths, smaller budgets)
SHORTER = {
    "recipes/pretrain_aalbert.sh": ["train.max_steps=2", "train.ckpt_every=2", "data.eval_max_utts=2"],
    "audiorep superb": ["--max-utts", "40", "--steps", "4", "--lrs", "1e-3", "--no-progress"],
    "pytest": None,  # the test command runs the suite that holds this test: CI runs it, not this test
}


def _blocks() -> list[tuple[str, str, int]]:
    """(language, body, first line number) of every fenced block."""
    text = README.read_text(encoding="utf-8")
    out = []
    for m in re.finditer(r"^```(\w+)\n(.*?)^```", text, flags=re.S | re.M):
        out.append((m.group(1), m.group(2), text[: m.start()].count("\n") + 2))
    return out


def _bash_commands() -> list[tuple[int, str]]:
    cmds = []
    for lang, body, line in _blocks():
        if lang != "bash":
            continue
        for i, raw in enumerate(body.splitlines()):
            cmd = raw.split(" #", 1)[0].strip()
            if cmd:
                cmds.append((line + i, cmd))
    return cmds


def _shortened(cmd: str) -> list[str] | None:
    """The command with its install part dropped and its SHORTER overrides appended; None = not run here."""
    if "pip install" in cmd:
        cmd = cmd.split("&&", 1)[1].strip() if "&&" in cmd else ""
    if not cmd:
        return None
    for prefix, extra in SHORTER.items():
        if cmd.startswith(prefix):
            return None if extra is None else shlex.split(cmd) + extra
    return shlex.split(cmd)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["AUDIOREP_HOME"] = str(tmp_path / "home")
    env["AUDIOREP_OFFLINE"] = "1"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def test_the_readme_has_the_two_setup_commands():
    cmds = [c for _, c in _bash_commands()]
    assert any(c.startswith("pip install -e . && ") for c in cmds)
    assert 'pip install -e ".[dev]" && pytest' in cmds


def test_readme_python_blocks_run(tmp_path):
    for lang, body, line in _blocks():
        if lang != "python":
            continue
        # outputs the block writes (my-model) land in tmp_path; the bundled audio it reads is given from ROOT
        script = body.replace('"audiorep/data/synth/', f'"{ROOT}/audiorep/data/synth/')
        res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(tmp_path),
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"README.md line {line}: python block failed:\n{res.stderr[-2000:]}"


def test_readme_bash_commands_run_in_order(tmp_path):
    """The bash lines run one after another in one scratch folder, so a later line may use an earlier one's output."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("recipes", "audiorep"):  # the README's commands name paths relative to the repository root
        (work / name).symlink_to(ROOT / name)
    ran = 0
    for line, cmd in _bash_commands():
        argv = _shortened(cmd)
        if argv is None:
            continue
        if argv[0] == "audiorep":
            argv = [sys.executable, "-m", "audiorep.cli", *argv[1:]]
        res = subprocess.run(argv, cwd=work, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, (f"README.md line {line}: `{cmd}` failed (exit {res.returncode}):\n"
                                     f"{res.stdout[-1500:]}\n{res.stderr[-2000:]}")
        ran += 1
    assert ran >= 2
