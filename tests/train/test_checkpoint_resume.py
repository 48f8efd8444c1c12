"""A run survives a crash: the previous checkpoint is kept, a damaged latest one falls back to it, and a run killed
with SIGKILL resumes to the same weights, bit for bit, as a run never interrupted."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from histosynth import tracking
from histosynth.gan.bundle import load_generator
from histosynth.defaults import EXPERIMENT
from histosynth.errors import HistosynthError
from histosynth.gan.train.checkpoint import KEYS, LAST, load_checkpoint, previous, save_checkpoint

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
HISTOSYNTH = str(Path(sys.executable).parent / "histosynth")


def payload(step: int) -> dict:
    return {k: {"step": step} for k in KEYS} | {"generator": {"w": torch.full((4,), float(step))}, "progress": {"step": step}}


@pytest.mark.unit
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
    last = tmp_path / "checkpoints" / LAST
    save_checkpoint(last, payload(1))
    assert not previous(last).exists()
    save_checkpoint(last, payload(2))
    assert previous(last).name == "last.prev.pt" and load_checkpoint(previous(last))["progress"]["step"] == 1
    assert load_checkpoint(last.parent)["progress"]["step"] == 2

    last.write_bytes(last.read_bytes()[:100])  # truncated (a copy cut short, a full disk)
    with caplog.at_level(logging.WARNING):
        got = load_checkpoint(last.parent)
    assert got["progress"]["step"] == 1 and torch.equal(got["generator"]["w"], torch.ones(4))
    assert "previous checkpoint" in caplog.text and "last.prev.pt" in caplog.text

    last.unlink()  # killed between the two renames: only the previous one is there
    assert load_checkpoint(last)["progress"]["step"] == 1

    previous(last).write_bytes(b"")
    with pytest.raises(HistosynthError, match="not readable either") as e:
        load_checkpoint(last)
    assert "MLflow" in e.value.hint


@pytest.mark.unit
def test_a_checkpoint_that_does_not_read_back_replaces_nothing(tmp_path, monkeypatch):
    last = tmp_path / LAST
    save_checkpoint(last, payload(1))
    import histosynth.gan.train.checkpoint as ckpt_mod

    real_load = ckpt_mod.load_payload

    def unreadable_new_file(path, *args, **kwargs):  # the fresh write is damaged (full disk, bad sector, ...)
        if Path(path).name.endswith(".new"):
            raise HistosynthError(f"'{path}' is truncated")
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(ckpt_mod, "load_payload", unreadable_new_file)
    with pytest.raises(HistosynthError):
        save_checkpoint(last, payload(2))
    monkeypatch.undo()
    assert load_checkpoint(last)["progress"]["step"] == 1 and not previous(last).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [LAST]


def _train_cmd(store_root, tracking_uri, out_dir: Path) -> list[str]:
    sets = [
        f"data.root={store_root}", f"tracking.tracking_uri={tracking_uri}", f"train.out_dir={out_dir}",
        "model.g_features=8", "model.d_features=8", "model.latent_dim=16", "train.batch_size=8",
        "train.epochs=4", "train.max_steps=0", "train.checkpoint_every=1", "train.sample_every=0", "train.log_every=6", "train.device=cpu",
    ]  # fmt: skip
    return [HISTOSYNTH, "train", "-c", str(CONFIGS / "dcgan-quick.yaml"), *(a for s in sets for a in ("-s", s)), "--no-progress"]


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(store_root, tracking_uri, tmp_path):
    """48 patches, batch 8: 6 steps per epoch, a checkpoint after each of 4 epochs. One run is killed with SIGKILL
    once a checkpoint exists; `--resume` on its checkpoints/ folder then ends where an uninterrupted run ends."""
    tracking.configure(tracking_uri)
    tracking.ensure_experiment(EXPERIMENT)  # the two runs start at once: create the store before they race for it
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight = subprocess.Popen(_train_cmd(store_root, tracking_uri, straight_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(_train_cmd(store_root, tracking_uri, killed_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed_dir / "checkpoints" / LAST
    deadline = time.monotonic() + 240
    while not ckpt.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed_dir / "generator" / "generator.pt").exists()
    stopped_at = load_checkpoint(ckpt.parent)["progress"]["step"]
    assert 0 < stopped_at < 24 and stopped_at % 6 == 0

    resumed = subprocess.run([HISTOSYNTH, "train", "--resume", str(ckpt.parent), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at epoch {stopped_at // 6} step {stopped_at}" in resumed.stderr
    assert straight.wait(timeout=300) == 0, straight.stderr.read()

    a, b = load_checkpoint(straight_dir / "checkpoints"), load_checkpoint(killed_dir / "checkpoints")
    assert a["progress"]["step"] == b["progress"]["step"] == 24
    for part in ("generator", "discriminator"):
        assert a[part].keys() == b[part].keys() and all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    ga, _ = load_generator(straight_dir / "generator")
    gb, _ = load_generator(killed_dir / "generator")
    assert all(torch.equal(x, y) for x, y in zip(ga.state_dict().values(), gb.state_dict().values()))
