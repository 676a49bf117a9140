"""The job launcher: how a Processing or Training job's process is run.

The runner hands each job to ``PipelineRunner.job_launcher``, anything with
``run(job)`` (``JobLauncher``). The default, ``SubprocessJobLauncher``, runs the
command as a local process in the job's /opt/ml stand-in, kills it at its maximum
runtime or when the execution is stopped, and turns a non-zero exit into the
FailureReason SageMaker would show. Other launchers wrap it (the fault tools fail
or slow down chosen steps: ``trainyard/local/faults.py``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .records import ExecutionStopped, StepFailure

DEFAULT_JOB_TIMEOUT_SECONDS = 15 * 60
# Local stand-in for the container paths; child processes get it as an env var
# so the step scripts can write /opt/ml/output/message to the mapped place.
ML_ROOT_ENV = "TRAINYARD_ML_ROOT"
_LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class Job:
    """One job, ready to run: its inputs are staged under ``root``."""

    step: str  # the pipeline step it runs for
    parameters: Mapping[str, Any]  # the execution's parameter values (TenantId, RunId, ...)
    command: list[str]
    root: Path  # the job's /opt/ml
    env: Mapping[str, str]  # the step's Environment
    timeout: float  # seconds: the runner's limit, or the step's MaxRuntimeInSeconds if lower
    failure_file: str  # under <root>/output: where the job writes its failure reason
    stop: threading.Event  # set when the execution is to stop
    metadata: dict[str, Any]  # the step record's metadata: the launcher notes command and logs


class JobLauncher(Protocol):
    def run(self, job: Job) -> None:
        """Run ``job`` to its end. Raises ``StepFailure`` (the FailureReason) if it
        failed, ``ExecutionStopped`` if ``job.stop`` was set meanwhile."""
        ...


class SubprocessJobLauncher:
    """Runs a job as a local child process, with ``TRAINYARD_ML_ROOT`` = its root."""

    def run(self, job: Job) -> None:
        env = {**os.environ, **job.env, ML_ROOT_ENV: str(job.root), "PYTHONUNBUFFERED": "1"}
        stdout_path, stderr_path = job.root / "job.stdout", job.root / "job.stderr"
        job.metadata["command"] = shlex.join(job.command)
        deadline = time.monotonic() + job.timeout
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(job.command, cwd=job.root, env=env, stdout=out, stderr=err)
            try:
                while True:
                    try:
                        returncode = proc.wait(timeout=0.25)
                        break
                    except subprocess.TimeoutExpired:
                        if job.stop.is_set():
                            raise ExecutionStopped from None
                        if time.monotonic() > deadline:
                            raise StepFailure(
                                f"job exceeded its maximum runtime of {int(job.timeout)} seconds"
                            ) from None
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        stdout = stdout_path.read_text(errors="replace")
        stderr = stderr_path.read_text(errors="replace")
        job.metadata["stdout_tail"] = "\n".join(stdout.splitlines()[-_LOG_TAIL_LINES:])
        job.metadata["stderr_tail"] = "\n".join(stderr.splitlines()[-_LOG_TAIL_LINES:])
        if returncode != 0:
            message_file = job.root / "output" / job.failure_file
            raise StepFailure(failure_reason(message_file, stderr, returncode))


def failure_reason(message_file: Path, stderr: str, returncode: int) -> str:
    """What SageMaker would show: the job's message file, else the log's last error."""
    if message_file.is_file():
        text = message_file.read_text(errors="replace").strip()
        if text:
            return text
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    if errors:
        return errors[-1][len("ERROR:") :].strip()
    if lines:
        return lines[-1]
    return f"process exited with status {returncode}"
