"""Data parallel training: two processes under torchrun make the updates of one process
on the same global batch, and a stopped two-process run resumes exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import distributed as dist

from tbptt import TBPTTError
from tbptt.data import Streams
from tbptt.training import distributed
from tests.ddp_run import STREAMS, WINDOWS, make_streams, make_trainer

ROOT = Path(__file__).resolve().parents[2]


def test_shards_side_by_side_are_the_global_batches():
    streams = make_streams(0, 122, 6)
    for epoch in (0, 1):  # epoch 1 starts at a random offset
        shards = [distributed.shard(streams, rank, 2).batches(epoch) for rank in (0, 1)]
        for whole, first, second in zip(streams.batches(epoch), *shards, strict=True):
            for name, field in zip(
                ("inputs", "targets", "resets", "mask"), whole.fields(), strict=True
            ):
                joined = torch.cat([getattr(first, name), getattr(second, name)], dim=1)
                assert torch.equal(joined, field), name
    assert len(distributed.shard(streams, 1, 2)) == len(streams)


def test_a_batch_that_does_not_split_evenly_is_refused():
    streams = Streams(torch.zeros(60, 1), torch.zeros(60, 1), 6, 5)
    with pytest.raises(TBPTTError, match="batch_size 6 is not divisible by the world size 4"):
        distributed.shard(streams, 0, 4)


def test_alone_every_collective_is_the_identity():
    loss, count = torch.tensor(2.5, requires_grad=True), torch.tensor(7)
    backward, mean, total = distributed.global_window(loss, count)
    assert backward is loss and float(mean) == 2.5 and total is count
    assert distributed.sum_values({"loss": 3.0}) == {"loss": 3.0}
    assert distributed.gather({"x": 1}) == [{"x": 1}] and distributed.get_world_size() == 1
    with pytest.raises(TBPTTError, match="written by 2 process"):
        distributed.own_share({"ranks": [{}, {}]})


def valid_counts(rank: int) -> list[int]:
    """Valid elements of each window (k1 = 3) of the run's first batches, on ``rank``."""
    shard = distributed.shard(make_streams(0, 122, 6), rank, 2)
    return [int(b.mask[start : start + 3].sum()) for b in shard.batches(0) for start in (0, 3)]


@pytest.mark.skipif(not dist.is_available(), reason="this PyTorch has no torch.distributed")
def test_two_processes_make_the_updates_of_one_and_resume_exactly(tmp_path):
    assert valid_counts(0) != valid_counts(1)  # the ranks' windows weigh differently
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "tests.ddp_run", str(tmp_path)]
    done = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    final = torch.load(tmp_path / "final.pt", weights_only=True)
    assert final["world_size"] == 2

    alone = make_trainer(None)
    metrics = alone.fit()
    assert alone.progress.updates == WINDOWS and STREAMS % 2 == 0
    for name, value in alone.model.state_dict().items():
        torch.testing.assert_close(final["whole"][name], value, rtol=1e-12, atol=1e-12)
        assert torch.equal(final["resumed"][name], final["whole"][name]), name
    assert final["loss"] == pytest.approx(metrics["loss"], rel=1e-12)
    records = [
        json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()
    ]
    logged = [record["window"] for record in records if record["kind"] == "train"]
    assert logged == list(range(1, WINDOWS + 1))  # once each: rank 0 alone logs


@pytest.mark.skipif(not dist.is_available(), reason="this PyTorch has no torch.distributed")
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="threads are read from /proc")
def test_leaving_the_process_group_stops_its_threads(tmp_path):
    """No gloo thread outlives ``launched`` (one running into interpreter exit can abort
    the process), also when ``torch._dynamo`` was first imported inside it."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "tests.ddp_exit", str(tmp_path)]
    done = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        threads = json.loads((tmp_path / f"threads-{rank}.json").read_text())
        assert not [name for name in threads if "gloo" in name], threads
