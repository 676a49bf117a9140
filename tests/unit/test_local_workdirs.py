"""The embedded stack says its state is in memory, and cleans up after killed runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from trainyard.cli import app
from trainyard.local.stack import OWNER_FILE, WORKDIR_PREFIX, remove_stale_workdirs


def _workdir(parent: Path, name: str, pid: int | None) -> Path:
    path = parent / f"{WORKDIR_PREFIX}{name}"
    (path / "pipeline").mkdir(parents=True)
    if pid is not None:
        (path / OWNER_FILE).write_text(str(pid))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_stacks_work_directory_is_removed_and_live_or_foreign_ones_are_kept(
    tmp_path: Path,
) -> None:
    killed = _workdir(tmp_path, "killed", _dead_pid())
    alive = _workdir(tmp_path, "alive", os.getppid())
    mine = _workdir(tmp_path, "mine", os.getpid())
    foreign = _workdir(tmp_path, "no-owner-file", None)
    other = tmp_path / "someone-elses"
    other.mkdir()

    assert remove_stale_workdirs(tmp_path) == [killed]
    assert not killed.exists()
    assert alive.exists() and mine.exists() and foreign.exists() and other.exists()


def test_local_up_help_says_state_is_in_memory_and_lost_on_restart() -> None:
    result = CliRunner().invoke(app, ["local", "up", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert "memory only" in text and "no persistent mode" in text
