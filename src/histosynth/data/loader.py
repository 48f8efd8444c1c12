"""Training batches from a patch store: the uint8 patches are loaded into one tensor once; each batch is
converted to float [-1, 1] on the training device (resized if the model size differs, optionally flipped).

Shuffling and flips draw from one seeded ``torch.Generator`` whose state is checkpointed, so a resumed run
sees exactly the batches the uninterrupted run would have seen.

Data-parallel (:mod:`histosynth.distributed`): every process draws the same shuffle and flips for the whole
global batch and loads only its ``part`` of it, so the processes together see exactly the one-process batches
and the checkpointed generator state is the same on every rank. ``trace`` (a JSON-lines file) records the
patch indices each batch loaded: how the data-parallel tests check that claim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from histosynth import defaults
from histosynth.data.store import PatchStore
from histosynth.errors import DataError

# Keep the uint8 patches on the GPU when they take less than this (else pinned host memory).
DEVICE_RESIDENT_BYTES = 4 << 30


def resolve_data_root(root: str) -> Path:
    """``data.root`` as a path. A relative root that starts with ``data/`` is read from the data folder
    (``HISTOSYNTH_DATA``, else the project's ``data/``: ``data/splits`` -> ``<project>/data/splits`` from any
    subfolder), so presets stay portable between a checkout and a pipeline or container with its own data."""
    path = Path(root).expanduser()
    parts = path.parts
    if not path.is_absolute() and parts and parts[0] == "data":
        return defaults.paths().data.joinpath(*parts[1:])
    return path.absolute()


def open_store(root: str, split: str) -> PatchStore:
    """The split's patch store, with an error that says how to build it when it is missing."""
    base = resolve_data_root(root)
    path = base / split if split else base
    if not (path / "manifest.json").is_file() and (base / "manifest.json").is_file() and split:
        raise DataError(f"'{base}' is a patch store itself, it has no split '{split}'", f"set data.root={base.parent} data.split={base.name}, or data.split=''")
    return PatchStore(path)


class BatchSource:
    """Shuffled, drop-last mini-batches of (images float (B,3,S,S) in [-1, 1], labels long (B,)) on ``device``.

    ``class_balance`` b in [0, 1]: each epoch draws ``n`` patches with replacement, a patch of a class of ``n_c``
    patches with weight ``n_c ** -b``, so class c's share of the epoch is proportional to ``n_c ** (1 - b)``: 0 is
    the data's own mix (a plain shuffle, every patch once), 1 equal classes, 0.5 square-root balancing. Rare
    classes are then seen more often, and so are their few patches.
    """

    def __init__(
        self,
        store: PatchStore,
        *,
        batch_size: int,
        image_size: int,
        device: torch.device,
        seed: int,
        hflip: bool = False,
        vflip: bool = False,
        transpose: bool = False,
        classes: list[str] | None = None,
        part: slice = slice(None),
        trace: Path | None = None,
        class_balance: float = 0.0,
    ):
        if not 0.0 <= class_balance <= 1.0:
            raise DataError(f"class_balance={class_balance} is outside [0, 1]", "use 0 (the data's class mix), 1 (equal classes) or between, e.g. 0.5")
        self.class_balance = float(class_balance)
        self.device = device
        self.batch_size = int(batch_size)
        self.image_size = int(image_size)
        self.hflip, self.vflip, self.transpose = bool(hflip), bool(vflip), bool(transpose)
        images = np.asarray(store.images)
        labels = np.asarray(store.labels, dtype=np.int64)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DataError(f"patch store '{store.root}' holds {images.dtype} images of shape {images.shape}", "rebuild it: patches must be uint8 (N, H, W, 3)")
        if len(labels) != len(images):
            raise DataError(f"patch store '{store.root}' has {len(images)} images but {len(labels)} labels", "rebuild the store (histosynth data patches)")
        self.classes = list(store.classes)
        if classes:
            missing = [c for c in classes if c not in self.classes]
            if missing:
                raise DataError(f"data.classes {missing} are not in the store (it has {self.classes})", "fix data.classes or leave it empty for all classes")
            old_to_new = np.full(len(self.classes), -1, dtype=np.int64)
            for new, c in enumerate(classes):
                old_to_new[self.classes.index(c)] = new
            keep = old_to_new[labels] >= 0
            images, labels = images[keep], old_to_new[labels[keep]]
            self.classes = list(classes)
        if len(images) < self.batch_size:
            raise DataError(
                f"patch store '{store.root}' has {len(images)} patches (selected), fewer than one batch of {self.batch_size}",
                "lower train.batch_size or add data",
            )
        self.n = len(images)
        self.patch_size = tuple(images.shape[1:3])
        nbytes = images.nbytes
        uint8 = torch.from_numpy(np.array(images, dtype=np.uint8, order="C", copy=True))  # (N, H, W, 3), read into memory once
        if device.type == "cuda":
            uint8 = uint8.to(device) if nbytes <= DEVICE_RESIDENT_BYTES else uint8.pin_memory()
        self.images = uint8
        self.labels = torch.from_numpy(labels).to(device)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.part = part  # this process's slice of every (global) batch
        self.trace = Path(trace) if trace else None

    def __len__(self) -> int:
        """Full batches per epoch."""
        return self.n // self.batch_size

    def class_counts(self) -> list[int]:
        """Patches per class (in ``classes`` order): the data's class mix (an epoch's, unless ``class_balance`` > 0)."""
        return torch.bincount(self.labels.cpu(), minlength=len(self.classes)).tolist()

    def permutation(self) -> torch.Tensor:
        """The next epoch's ``n`` patch indices (call once per epoch, before its batches): a fresh shuffle of all
        patches, or with ``class_balance`` > 0 a class-weighted draw with replacement."""
        if self.class_balance == 0.0:
            return torch.randperm(self.n, generator=self.generator)
        labels = self.labels.cpu()
        counts = torch.bincount(labels, minlength=len(self.classes)).double()
        return torch.multinomial(counts[labels] ** -self.class_balance, self.n, replacement=True, generator=self.generator)

    def batch(self, idx: torch.Tensor, part: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``idx[part]`` as float [-1, 1] NCHW on the device (+ flips and transpositions), and their class ids. They are
        drawn for all of ``idx``, so every part of a batch draws the same random numbers."""
        b = idx.numel()
        flip_h = torch.rand(b, generator=self.generator)[part] < 0.5 if self.hflip else None
        flip_v = torch.rand(b, generator=self.generator)[part] < 0.5 if self.vflip else None
        swap = torch.rand(b, generator=self.generator)[part] < 0.5 if self.transpose else None
        idx = idx[part]
        dev_idx = idx.to(self.images.device)
        x = self.images[dev_idx].to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().mul_(1.0 / 127.5).sub_(1.0)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False).clamp_(-1.0, 1.0)
        if flip_h is not None:
            x = torch.where(flip_h.to(self.device)[:, None, None, None], x.flip(3), x)
        if flip_v is not None:
            x = torch.where(flip_v.to(self.device)[:, None, None, None], x.flip(2), x)
        if swap is not None:
            x = torch.where(swap.to(self.device)[:, None, None, None], x.transpose(2, 3), x)
        return x.contiguous(), self.labels[idx.to(self.labels.device)]

    def batches(self, perm: torch.Tensor, start: int = 0):
        """Yield (batch index, images, labels) for batches ``start..len(self)-1`` of the epoch ``perm``."""
        for i in range(start, len(self)):
            idx = perm[i * self.batch_size : (i + 1) * self.batch_size]
            if self.trace is not None:
                with self.trace.open("a") as f:
                    f.write(json.dumps({"batch": i, "idx": idx[self.part].tolist()}) + "\n")
            yield i, *self.batch(idx, self.part)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
