"""Training metrics arrive at a real Prometheus pushgateway (Debian's prometheus-pushgateway on loopback).

The binary is not installed at test time: without it (apt-get install prometheus-pushgateway, needs root) the
integration tests skip and say so.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time

import numpy as np
import pytest
import requests
from servers import free_port

from histosynth import monitoring

BINARY = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
needs_gateway = pytest.mark.skipif(BINARY is None, reason="Debian's prometheus-pushgateway is not installed (apt-get install prometheus-pushgateway)")


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("pushgateway") / "pushgateway.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([BINARY, f"--web.listen-address=127.0.0.1:{port}"], stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "pushgateway did not become ready"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _groups(url: str) -> list[dict]:
    """The gateway's /api/v1/metrics: one entry per pushed group, with every metric family and its samples."""
    r = requests.get(f"{url}/api/v1/metrics", timeout=5)
    r.raise_for_status()
    return r.json()["data"]


def _samples(group: dict, family: str) -> dict[tuple, float]:
    fam = group.get(family)
    if fam is None:
        return {}
    return {tuple(sorted((k, v) for k, v in m["labels"].items() if k not in ("job", "run_id", "instance"))): float(m["value"]) for m in fam["metrics"]}


@pytest.mark.unit
def test_url_from_env(monkeypatch):
    monkeypatch.delenv(monitoring.ENV_PUSHGATEWAY, raising=False)
    assert monitoring.from_env("r1") is None
    assert monitoring.pushgateway_url("gw:9091") == "http://gw:9091"
    monkeypatch.setenv(monitoring.ENV_PUSHGATEWAY, "https://gw.example/")
    assert monitoring.pushgateway_url() == "https://gw.example"


@pytest.mark.unit
def test_unreachable_gateway_never_stops_training(caplog):
    port = free_port()  # nothing listens there
    with pytest.raises(monitoring.ServerError, match=f"pushgateway at http://127.0.0.1:{port} is unreachable"):
        monitoring.check(f"http://127.0.0.1:{port}", timeout=1)
    pusher = monitoring.TrainingPusher(f"http://127.0.0.1:{port}", run_id="r1", timeout=1)
    with caplog.at_level(logging.WARNING, logger="histosynth.monitoring"):
        assert pusher.push(1, {"loss_d": 1.0, "loss_g": 2.0}) is False
        assert pusher.push(2, {"loss_d": 1.0, "loss_g": 2.0}) is False
    assert pusher.failures == 2 and len([r for r in caplog.records if "failed" in r.message]) == 1  # logged once


@pytest.mark.integration
@needs_gateway
def test_pusher_values_arrive(pushgateway):
    pusher = monitoring.TrainingPusher(pushgateway, run_id="unit-run", method="dcgan")
    assert pusher.push(40, {"loss_d": 0.75, "loss_g": 1.5, "d_real": 0.6, "img_per_s": 321.0, "rl_eo/reward_mean": 0.25}, steps=10, seconds=2.0)
    group = next(g for g in _groups(pushgateway) if g["labels"].get("run_id") == "unit-run")
    assert group["labels"]["job"] == "histosynth-train"
    assert _samples(group, "histosynth_train_step") == {(("method", "dcgan"),): 40.0}
    assert _samples(group, "histosynth_train_step_seconds") == {(("method", "dcgan"),): 0.2}
    assert _samples(group, "histosynth_train_images_per_second") == {(("method", "dcgan"),): 321.0}
    assert _samples(group, "histosynth_train_loss") == {(("loss", "loss_d"), ("method", "dcgan")): 0.75, (("loss", "loss_g"), ("method", "dcgan")): 1.5}
    assert _samples(group, "histosynth_train_reward") == {(("method", "dcgan"), ("name", "rl_eo/reward_mean")): 0.25}
    assert _samples(group, "histosynth_train_metric") == {(("method", "dcgan"), ("name", "d_real")): 0.6}
    assert "histosynth_train_gpu_memory_bytes" not in group or not group["histosynth_train_gpu_memory_bytes"]["metrics"]  # CPU: none
    text = requests.get(f"{pushgateway}/metrics", timeout=5).text  # what Prometheus scrapes
    assert 'histosynth_train_step{instance="",job="histosynth-train",method="dcgan",run_id="unit-run"} 40' in text


@pytest.mark.integration
@needs_gateway
def test_training_pushes_to_the_gateway(pushgateway, tmp_path, monkeypatch):
    """A real (tiny) training run with HISTOSYNTH_PUSHGATEWAY set: the last window's values arrive, equal to MLflow's."""
    from mlflow import MlflowClient

    from histosynth.config import load_config
    from histosynth.data.store import Patch, write_store
    from histosynth.gan.train.trainer import train

    rng = np.random.default_rng(0)
    write_store(tmp_path / "splits" / "train", (Patch(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "a", {"slide": f"s{i}"}) for i in range(16)), classes=["a"], provenance={"kind": "test"})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv(monitoring.ENV_PUSHGATEWAY, pushgateway)
    cfg = load_config(None, [
        f"data.root={tmp_path / 'splits'}", f"tracking.tracking_uri={uri}", f"train.out_dir={tmp_path / 'run'}",
        "data.image_size=32", "model.g_features=8", "model.d_features=8", "model.latent_dim=16",
        "train.batch_size=8", "train.epochs=2", "train.log_every=2", "train.n_samples=4", "train.device=cpu",
    ])
    res = train(cfg, progress=False)
    group = next(g for g in _groups(pushgateway) if g["labels"].get("run_id") == res.run_id)
    method = (("method", cfg.method),)
    assert _samples(group, "histosynth_train_step") == {method: float(res.steps)}
    client = MlflowClient(uri)
    for loss in ("loss_d", "loss_g"):
        last = client.get_metric_history(res.run_id, loss)[-1]
        assert last.step == res.steps
        assert _samples(group, "histosynth_train_loss")[(("loss", loss),) + method] == pytest.approx(last.value, rel=1e-12)
    ips = client.get_metric_history(res.run_id, "img_per_s")[-1].value
    assert _samples(group, "histosynth_train_images_per_second")[method] == pytest.approx(ips, rel=1e-12)
    step_s = _samples(group, "histosynth_train_step_seconds")[method]
    assert step_s == pytest.approx(8 / ips, rel=1e-6)  # batch 8, one D step: seconds per step = images per step / img/s
