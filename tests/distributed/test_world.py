"""histosynth.distributed: torchrun's environment, the batch arithmetic, the backend choice and their errors; and
the collectives with a real 2-process gloo group (gradients averaged = the full-batch gradient)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from histosynth.data.loader import BatchSource
from histosynth.data.store import Patch, PatchStore, write_store
from histosynth.defaults import ENV_DIST_BACKEND
from histosynth.distributed import World, backend_for, env_world, init
from histosynth.errors import ConfigError

TORCHRUN = str(Path(sys.executable).parent / "torchrun")


@pytest.mark.unit
def test_the_environment_torchrun_sets_and_bad_values():
    assert env_world({}) == (0, 1, 0)
    assert env_world({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    with pytest.raises(ConfigError, match="WORLD_SIZE='two' is not an integer") as e:
        env_world({"WORLD_SIZE": "two"})
    assert "torchrun" in e.value.hint
    with pytest.raises(ConfigError, match="RANK=2 WORLD_SIZE=2"):
        env_world({"RANK": "2", "WORLD_SIZE": "2"})


@pytest.mark.unit
def test_each_rank_takes_its_slice_of_the_global_batch():
    assert [World(r, 4).part(32) for r in range(4)] == [slice(0, 8), slice(8, 16), slice(16, 24), slice(24, 32)]
    assert World().part(7) == slice(0, 7)
    with pytest.raises(ConfigError, match=r"train.batch_size=30 does not split over 4 processes") as e:
        World(1, 4).part(30)
    assert "multiple of 4" in e.value.hint and "train.batch_size=28" in e.value.hint


@pytest.mark.unit
def test_noise_seeds_keep_rank_0s_stream_and_differ_between_ranks():
    assert World(0, 2).noise_seed(0, 12) is None
    seeds = {World(r, 4).noise_seed(0, 12) for r in (1, 2, 3)}
    assert len(seeds) == 3 and World(1, 4).noise_seed(0, 12) != World(1, 4).noise_seed(0, 18)


@pytest.mark.unit
def test_backend_follows_the_device_and_nccl_needs_cuda():
    assert backend_for(torch.device("cpu"), {}) == "gloo"
    assert backend_for(torch.device("cuda", 0), {}) == "nccl"
    assert backend_for(torch.device("cuda", 0), {ENV_DIST_BACKEND: "gloo"}) == "gloo"
    with pytest.raises(ConfigError, match="NCCL needs CUDA") as e:
        backend_for(torch.device("cpu"), {ENV_DIST_BACKEND: "nccl"})
    assert "unset HISTOSYNTH_DIST_BACKEND" in e.value.hint
    with pytest.raises(ConfigError, match="'mpi' is not a backend"):
        backend_for(torch.device("cpu"), {ENV_DIST_BACKEND: "mpi"})


@pytest.mark.unit
def test_outside_torchrun_a_one_process_world_with_no_process_group():
    world, device = init("cpu", env={})
    assert world == World() and world.is_main and not world.parallel and device == torch.device("cpu")
    assert not torch.distributed.is_initialized()
    metrics = {"loss": torch.tensor(2.0)}
    assert world.mean(metrics) is metrics and world.broadcast("x") == "x"


@pytest.mark.unit
def test_the_parts_of_a_batch_are_the_one_process_batch_flips_included(tmp_path):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 8, 8, 3), dtype=torch.uint8, generator=gen).numpy()
    write_store(tmp_path / "s", (Patch(images[i], "a" if i % 2 else "b", {"x": i}) for i in range(24)), classes=["a", "b"])
    store = PatchStore(tmp_path / "s")

    def source(part: slice) -> BatchSource:
        return BatchSource(store, batch_size=8, image_size=8, device=torch.device("cpu"), seed=3, hflip=True, vflip=True, part=part)

    whole, halves = source(slice(None)), [source(World(r, 2).part(8)) for r in range(2)]
    perms = [s.permutation() for s in (whole, *halves)]
    assert all(torch.equal(perms[0], p) for p in perms[1:])
    for (_, x, y), (_, x0, y0), (_, x1, y1) in zip(whole.batches(perms[0]), halves[0].batches(perms[1]), halves[1].batches(perms[2])):
        assert x0.shape[0] == x1.shape[0] == 4
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    assert all(torch.equal(whole.generator.get_state(), h.generator.get_state()) for h in halves)  # one checkpointable state


WORKER = """
import json, sys, torch
from histosynth import distributed
world, device = distributed.init("cpu")
torch.manual_seed(0)
model = torch.nn.Linear(3, 2)
if world.rank == 1:
    torch.nn.init.zeros_(model.weight)  # prepare() must replace it by rank 0's
world.prepare(model)
g = torch.Generator().manual_seed(1)
x, t = torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g)
part = world.part(8)
loss = ((model(x[part]) - t[part]) ** 2).mean()
loss.backward()
world.average_gradients(model.parameters())
out = {"weight": model.weight.tolist(), "grad": model.weight.grad.tolist(), "bias_grad": model.bias.grad.tolist(),
       "loss": float(world.mean({"loss": loss.detach()})["loss"]), "from_0": world.broadcast(f"rank {world.rank}")}
open(sys.argv[1] + f"/rank{world.rank}.json", "w").write(json.dumps(out))
"""


@pytest.mark.integration
def test_two_gloo_processes_average_to_the_full_batch_gradient(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g)
    loss = ((model(x) - t) ** 2).mean()
    loss.backward()
    for r in (r0, r1):
        assert torch.equal(torch.tensor(r["weight"]), model.weight.detach())
        assert torch.allclose(torch.tensor(r["grad"]), model.weight.grad, atol=1e-6)
        assert torch.allclose(torch.tensor(r["bias_grad"]), model.bias.grad, atol=1e-6)
        assert r["loss"] == pytest.approx(float(loss.detach()), abs=1e-6) and r["from_0"] == "rank 0"
