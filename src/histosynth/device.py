"""Device, mixed precision, seeding and determinism: one place for the CPU/CUDA differences.

Mixed precision on CUDA: bf16 where the GPU supports it (no loss scaling needed), else fp16 with a
``GradScaler``. CPU runs fp32 unless bf16 autocast is asked for (``cpu_bf16``) and the processor has native
bf16 dot products (AVX512-BF16 or AMX): ~1.5x faster convolutions there, still seeded and deterministic.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.utils.deterministic

from histosynth.errors import ConfigError


def resolve_device(name: str | torch.device = "auto", setting: str = "train.device") -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; asking for CUDA without one is an error that names
    ``setting`` (the config key or CLI option the value came from)."""
    if isinstance(name, torch.device):
        return name

    def said(value: str) -> str:
        return f"{setting} {value}" if setting.startswith("-") else f"{setting}={value}"

    name = (name or "auto").strip()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{said(name)} but no CUDA GPU is visible", f"use {said('auto')} or {said('cpu')}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{said(name)} but only {torch.cuda.device_count()} GPU(s) are visible", "use cuda:0 .. cuda:N-1")
    elif dev.type != "cpu":
        raise ConfigError(f"{said(name)} is not supported", "use auto, cpu, cuda or cuda:N")
    return dev


@dataclass(frozen=True)
class Amp:
    """Mixed-precision settings for one device: ``dtype`` is None when AMP is off."""

    device_type: str
    dtype: torch.dtype | None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def needs_scaler(self) -> bool:
        """fp16 needs loss scaling against gradient underflow; bf16 has fp32's exponent range."""
        return self.dtype == torch.float16

    @property
    def name(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that is a no-op (enabled=False) unless fp16 needs it."""
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_scaler)


def cpu_has_bf16() -> bool:
    """Native bf16 matrix instructions (oneDNN runs bf16 convolutions fast only with them)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def amp_for(device: torch.device, requested: bool = True, cpu_bf16: bool = False) -> Amp:
    """CUDA: bf16 if supported, else fp16 (with a GradScaler). CPU: bf16 when ``cpu_bf16`` and the processor
    has native bf16, else fp32."""
    if not requested:
        return Amp(device.type, None)
    if device.type != "cuda":
        return Amp("cpu", torch.bfloat16 if cpu_bf16 and cpu_has_bf16() else None)
    if torch.cuda.is_bf16_supported():
        return Amp("cuda", torch.bfloat16)
    return Amp("cuda", torch.float16)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_determinism(device: torch.device, deterministic: bool) -> None:
    """Deterministic kernels (bit-exact resume on CPU; reproducible up to cuDNN on CUDA) or fast autotuned ones."""
    if device.type == "cuda":
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic
    # warn_only: an op without a deterministic kernel warns instead of stopping a long run
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # Deterministic mode also NaN-fills every fresh allocation by default: a debugging aid that costs time
    # on each op and is not needed for reproducibility (nothing here reads uninitialised memory).
    torch.utils.deterministic.fill_uninitialized_memory = False


@contextlib.contextmanager
def determinism(device: torch.device, deterministic: bool):
    """:func:`set_determinism` for the duration of a block; the process-wide flags are restored after it."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.utils.deterministic.fill_uninitialized_memory,
    )
    set_determinism(device, deterministic)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
        torch.utils.deterministic.fill_uninitialized_memory = saved[4]


def rng_state() -> dict[str, Any]:
    """Every global RNG state, in a form ``torch.load(weights_only=True)`` accepts (tensors, ints, tuples)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        for i, s in enumerate(cuda):
            torch.cuda.set_rng_state(s, i)
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def describe(device: torch.device, amp: Amp | None = None) -> dict[str, str]:
    """Tags that pin where a run ran: device name, AMP mode, torch/CUDA versions, CPU threads."""
    info = {
        "device": str(device),
        "device.type": device.type,
        "torch.version": torch.__version__,
        "torch.cuda": str(torch.version.cuda),
        "torch.threads": str(torch.get_num_threads()),
        "python.version": platform.python_version(),
        "amp": amp.name if amp else "off",
    }
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        info["device.name"] = torch.cuda.get_device_name(idx)
        info["cudnn.version"] = str(torch.backends.cudnn.version())
    else:
        info["device.name"] = platform.processor() or platform.machine()
    return info


def sync(device: torch.device) -> None:
    """Wait for queued kernels (timing on CUDA); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
