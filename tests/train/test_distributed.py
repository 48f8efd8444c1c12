"""`torchrun --nproc_per_node 2 -m histosynth train` on CPU (gloo): the two processes together see exactly the
one-process batches, log one MLflow run with the one-process metric keys, and a job whose rank was killed with
SIGKILL resumes from its last checkpoint in one process or two and ends on the same global data order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from histosynth import tracking
from histosynth.defaults import ENV_BATCH_TRACE, EXPERIMENT
from histosynth.gan.train.checkpoint import LAST, load_checkpoint

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BIN = Path(sys.executable).parent
HISTOSYNTH, TORCHRUN = str(BIN / "histosynth"), str(BIN / "torchrun")

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # each ~35-45 s on 2 loaded cores


def train_args(store_root, tracking_uri, out_dir: Path, epochs: int) -> list[str]:
    """48 patches, global batch 8: 6 steps per epoch; a checkpoint and a sample grid after every epoch; flips on."""
    sets = [
        f"data.root={store_root}", f"tracking.tracking_uri={tracking_uri}", f"train.out_dir={out_dir}",
        "model.g_features=8", "model.d_features=8", "model.latent_dim=16", "train.batch_size=8", "train.n_samples=4",
        f"train.epochs={epochs}", "train.max_steps=0", "train.checkpoint_every=1", "train.sample_every=1", "train.log_every=4",
        "train.device=cpu", "data.hflip=true",
    ]  # fmt: skip
    return ["train", "-c", str(CONFIGS / "dcgan-quick.yaml"), *(a for s in sets for a in ("-s", s)), "--no-progress"]


def torchrun(n: int) -> list[str]:
    return [TORCHRUN, "--standalone", "--nproc_per_node", str(n), "-m", "histosynth"]


def env_with(trace: Path) -> dict[str, str]:
    return {**os.environ, ENV_BATCH_TRACE: str(trace), "OMP_NUM_THREADS": "1"}


def trace(folder: Path, rank: int = 0) -> list[list[int]]:
    return [json.loads(line)["idx"] for line in (folder / f"rank{rank}.jsonl").read_text().splitlines()]


def runs_in(tracking_uri: str, out_dir: Path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id], f"tags.`histosynth.out_dir` = '{out_dir}'")


def test_two_processes_train_what_one_process_trains(store_root, tracking_uri, tmp_path):
    tracking.configure(tracking_uri)
    tracking.ensure_experiment(EXPERIMENT)  # the two jobs start at once: create the store before they race for it
    one, two = tmp_path / "one", tmp_path / "two"
    single = subprocess.Popen([HISTOSYNTH, *train_args(store_root, tracking_uri, one, 2)], env=env_with(tmp_path / "trace1"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ddp = subprocess.run([*torchrun(2), *train_args(store_root, tracking_uri, two, 2)], env=env_with(tmp_path / "trace2"), capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert single.wait(timeout=300) == 0, single.stderr.read()[-3000:]
    assert ddp.stdout.count("done 12 steps / 2 epochs") == 1, ddp.stdout  # rank 0 alone reports

    whole, parts = trace(tmp_path / "trace1"), (trace(tmp_path / "trace2", 0), trace(tmp_path / "trace2", 1))
    assert len(whole) == len(parts[0]) == len(parts[1]) == 12
    assert all(len(p) == 4 for p in parts[0] + parts[1])
    assert [a + b for a, b in zip(*parts)] == whole  # rank 0 the first half of each global batch, rank 1 the second

    (run_one,), (run_two,) = runs_in(tracking_uri, one), runs_in(tracking_uri, two)  # exactly one MLflow run each
    assert run_two.data.metrics.keys() == run_one.data.metrics.keys()
    assert run_two.data.params["train.processes"] == "2" and run_one.data.params["train.processes"] == "1"
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert files(two) == files(one)  # the same outputs, written once (rank 1 writes none)
    ckpt = load_checkpoint(two / "checkpoints")
    assert ckpt["progress"]["step"] == 12 and ckpt["run"]["run_id"] == run_two.info.run_id


def rank_pid(launcher: subprocess.Popen, rank: int, deadline: float) -> int:
    """The pid of the torchrun worker with ``RANK=rank`` (a child of the launcher)."""
    while time.monotonic() < deadline:
        children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
        for pid in children:
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in env:
                return int(pid)
        time.sleep(0.05)
    raise AssertionError(f"no worker with RANK={rank} appeared")


@pytest.mark.parametrize("resume_procs", [1, 2])
def test_sigkill_of_one_rank_then_resume(store_root, tracking_uri, tmp_path, resume_procs):
    """A 2-process job (4 epochs of 6 steps, a checkpoint after each) loses rank 1 to SIGKILL once a checkpoint
    exists; torchrun ends the job. `histosynth train --resume` in one process, or in two, finishes the run,
    loading the global batches an uninterrupted one-process run loads from that step on."""
    tracking.configure(tracking_uri)
    tracking.ensure_experiment(EXPERIMENT)
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight = subprocess.Popen([HISTOSYNTH, *train_args(store_root, tracking_uri, straight_dir, 4)], env=env_with(tmp_path / "t-straight"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    job = subprocess.Popen([*torchrun(2), *train_args(store_root, tracking_uri, killed_dir, 4)], env=env_with(tmp_path / "t-killed"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    victim = rank_pid(job, 1, deadline)
    ckpt = killed_dir / "checkpoints" / LAST
    while not ckpt.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(victim, signal.SIGKILL)
    assert job.wait(timeout=120) != 0, "the job ended before rank 1 could be killed"
    assert "SIGKILL" in job.stderr.read()  # torchrun names the signal that ended the rank
    assert not (killed_dir / "generator" / "generator.pt").exists()
    stopped_at = load_checkpoint(ckpt.parent)["progress"]["step"]
    assert 0 < stopped_at < 24 and stopped_at % 6 == 0

    launcher = [HISTOSYNTH] if resume_procs == 1 else torchrun(resume_procs)
    resumed = subprocess.run([*launcher, "train", "--resume", str(ckpt.parent), "--no-progress"], env=env_with(tmp_path / "t-resumed"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at epoch {stopped_at // 6} step {stopped_at}" in resumed.stderr
    assert straight.wait(timeout=300) == 0, straight.stderr.read()[-3000:]
    assert load_checkpoint(killed_dir / "checkpoints")["progress"]["step"] == 24
    parts = [trace(tmp_path / "t-resumed", r) for r in range(resume_procs)]
    assert [sum(p, []) for p in zip(*parts)] == trace(tmp_path / "t-straight")[stopped_at:]
