"""`histosynth pipeline run` on kfp.local shows each step's output, not the executor's JSON dump of its input nor
warnings about cluster-only settings; --verbose / HISTOSYNTH_LOG=debug brings them back (one tiny pipeline, seconds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from histosynth.cli.kfp_output import StepOutput

ROOT = Path(__file__).resolve().parents[2]
ECHO_PIPELINE = '''
from kfp import dsl


@dsl.component(base_image="ghcr.io/example/histosynth-gpu:1", install_kfp_package=False)
def echo(model_name: str, alias: str) -> str:
    print(f"echo step: {model_name}@{alias}")
    return alias


@dsl.pipeline(name="echo")
def PIPELINE(model_name: str = "echo-model", alias: str = "candidate", tracking_uri: str = "") -> str:
    task = echo(model_name=model_name, alias=alias)
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)  # cluster-only: kfp.local ignores it
    return task.output
'''


def run_echo(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir(exist_ok=True)
    (pipelines / "echo_pipeline.py").write_text(ECHO_PIPELINE)
    exe = Path(sys.executable).parent / "histosynth"
    cmd = [str(exe), "pipeline", "run", "echo", "--config", "configs/dcgan-quick.yaml", "--alias", "demo", "--pipeline-root", str(tmp_path / "runs"), *args]
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, "HISTOSYNTH_PIPELINES": str(pipelines), **(env or {})}, capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_local_run_output_has_step_output_but_no_executor_dump(tmp_path):
    proc = run_echo(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shown = proc.stdout + proc.stderr
    assert "echo step: echo-model@demo" in shown and "pipeline 'echo' finished" in shown
    assert "Got executor_input" not in shown and '"inputs": {' not in shown and "[KFP Executor" not in shown
    assert "will be ignored" not in shown and "no effect" not in shown and "non-Python base image" not in shown

    loud = run_echo(tmp_path, "--verbose")
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert "Got executor_input" in loud.stderr and '"parameterValues": {' in loud.stderr
    assert "debug: kfp.local: Task 'echo': settings ['accelerator'] have no effect in the current local runner" in loud.stderr
    assert "echo step: echo-model@demo" in loud.stdout
    env_loud = run_echo(tmp_path, env={"HISTOSYNTH_LOG": "debug"})
    assert "Got executor_input" in env_loud.stderr


class Sink:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass


@pytest.mark.unit
def test_step_output_drops_only_executor_info_and_the_json_dump():
    sink = Sink()
    out = StepOutput(sink)
    out.write("  [KFP Executor 2026-12-04 03:00:00,123 INFO]: Got executor_input:\n  {\n      \"inputs\": {\n")
    out.write("          \"a\": 1\n      }\n  }\n  [KFP Executor 2026-12-04 03:00:01,000 INFO]: Loading KFP component\n")
    out.write("  epoch 1/2 loss 0.5\n  }\n  [KFP Executor 2026-12-04 03:00:02,000 ERROR]: step failed\nTraceback (most")
    out.flush()
    assert sink.text == "  epoch 1/2 loss 0.5\n  }\n  [KFP Executor 2026-12-04 03:00:02,000 ERROR]: step failed\nTraceback (most\n"
