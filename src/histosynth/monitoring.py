"""Training metrics pushed to a Prometheus pushgateway (when one is configured).

Training runs are batch jobs: Prometheus cannot scrape them reliably, so at every metrics-logging step the
trainer pushes its latest values to the pushgateway named by ``HISTOSYNTH_PUSHGATEWAY`` (``http://host:9091``)
under job ``histosynth-train`` and grouping key ``run_id`` (one group per MLflow run; Prometheus scrapes the
gateway with ``honor_labels``). Pushed gauges:

- ``histosynth_train_step``, ``histosynth_train_step_seconds`` (mean wall time per step in the window),
  ``histosynth_train_images_per_second``;
- ``histosynth_train_loss{loss="loss_d"|"loss_g"}``, ``histosynth_train_reward{name=...}`` (RL-EO, every logged
  key with "reward" in its name), ``histosynth_train_metric{name=...}`` for every other logged scalar (d_real, grad norms, ...);
- ``histosynth_train_gpu_memory_bytes{kind="allocated"|"reserved"|"max_allocated"}`` on CUDA;
- ``histosynth_train_last_push_timestamp_seconds``.

A pushgateway that stops answering never stops training: the failure is logged once and pushing goes on
being attempted (a restarted gateway picks the run up again). ``check()`` is the fail-early probe.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from typing import Any, Mapping

from histosynth.errors import ServerError

ENV_PUSHGATEWAY = "HISTOSYNTH_PUSHGATEWAY"
JOB = "histosynth-train"
LOSSES = ("loss_d", "loss_g")
log = logging.getLogger("histosynth.monitoring")


def pushgateway_url(url: str | None = None) -> str:
    """``url`` or ``$HISTOSYNTH_PUSHGATEWAY`` ("" when neither is set), with a scheme."""
    url = (url if url is not None else os.environ.get(ENV_PUSHGATEWAY, "")).strip().rstrip("/")
    if url and "://" not in url:
        url = "http://" + url
    return url


def check(url: str, timeout: float = 5.0) -> None:
    """Raise ServerError unless the pushgateway at ``url`` answers ``/-/ready``."""
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=timeout) as r:
            if r.status == 200:
                return
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    except (urllib.error.URLError, OSError) as e:
        raise ServerError(f"pushgateway at {url} is unreachable ({e.__class__.__name__})", f"start it, or unset {ENV_PUSHGATEWAY} to train without pushing metrics") from e
    raise ServerError(f"pushgateway at {url} answered {code} on /-/ready", "check the pushgateway logs")


class TrainingPusher:
    """Pushes one training run's latest metrics; ``push(step, values, steps, seconds, device)``."""

    def __init__(self, url: str, run_id: str, method: str = "", job: str = JOB, timeout: float = 5.0):
        from prometheus_client import CollectorRegistry, Gauge

        self.url, self.job, self.timeout = url, job, timeout
        self.grouping = {"run_id": run_id}
        self.registry = CollectorRegistry()
        labels = {"method": method or "unknown"}
        r = self.registry
        self.step = Gauge("histosynth_train_step", "Optimizer steps done", ["method"], registry=r).labels(**labels)
        self.step_seconds = Gauge("histosynth_train_step_seconds", "Mean wall time per training step over the last logging window", ["method"], registry=r).labels(**labels)
        self.img_per_s = Gauge("histosynth_train_images_per_second", "Real images consumed per second over the last logging window", ["method"], registry=r).labels(**labels)
        self.loss = Gauge("histosynth_train_loss", "Mean GAN losses over the last logging window", ["method", "loss"], registry=r)
        self.reward = Gauge("histosynth_train_reward", "RL-EO rewards over the last logging window", ["method", "name"], registry=r)
        self.other = Gauge("histosynth_train_metric", "Other per-step training scalars (window means)", ["method", "name"], registry=r)
        self.gpu_mem = Gauge("histosynth_train_gpu_memory_bytes", "CUDA memory of the training process", ["method", "kind"], registry=r)
        self.last_push = Gauge("histosynth_train_last_push_timestamp_seconds", "When these values were pushed", ["method"], registry=r).labels(**labels)
        self.method = labels["method"]
        self.failures = 0

    def update(self, step: int, values: Mapping[str, float], steps: int = 0, seconds: float = 0.0, device: Any = None) -> None:
        """Set the gauges (without pushing): window means in ``values``, ``steps`` steps took ``seconds``."""
        m = self.method
        self.step.set(step)
        if steps > 0 and seconds > 0:
            self.step_seconds.set(seconds / steps)
        for key, value in values.items():
            v = float(value)
            if key == "img_per_s":
                self.img_per_s.set(v)
            elif key in LOSSES:
                self.loss.labels(method=m, loss=key).set(v)
            elif "reward" in key:
                self.reward.labels(method=m, name=key).set(v)
            else:
                self.other.labels(method=m, name=key).set(v)
        if device is not None and str(device).startswith("cuda"):
            import torch

            self.gpu_mem.labels(method=m, kind="allocated").set(torch.cuda.memory_allocated(device))
            self.gpu_mem.labels(method=m, kind="reserved").set(torch.cuda.memory_reserved(device))
            self.gpu_mem.labels(method=m, kind="max_allocated").set(torch.cuda.max_memory_allocated(device))
        self.last_push.set(time.time())

    def push(self, step: int, values: Mapping[str, float], steps: int = 0, seconds: float = 0.0, device: Any = None) -> bool:
        """Update and push (replacing the run's group); False when the gateway did not take it."""
        from prometheus_client import push_to_gateway

        self.update(step, values, steps, seconds, device)
        try:
            push_to_gateway(self.url, job=self.job, registry=self.registry, grouping_key=self.grouping, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 - monitoring must never end a training run
            self.failures += 1
            if self.failures == 1:
                log.warning("pushing metrics to %s failed (%s: %s); training goes on", self.url, e.__class__.__name__, e)
            return False
        if self.failures:
            log.info("pushing metrics to %s works again", self.url)
            self.failures = 0
        return True


def from_env(run_id: str, method: str = "", url: str | None = None) -> TrainingPusher | None:
    """A pusher when a pushgateway is configured (``url`` or ``$HISTOSYNTH_PUSHGATEWAY``), else None."""
    url = pushgateway_url(url)
    if not url:
        return None
    try:
        check(url)
    except ServerError as e:
        log.warning("%s; metrics will be pushed once it answers", e.problem)
    return TrainingPusher(url, run_id=run_id, method=method)
