"""Device names are checked once; results record the machine they were measured on."""

from __future__ import annotations

import json

import pytest
import torch

import tbptt
from tbptt import TBPTTError
from tbptt.devices import device_of, machine, parse_device


def test_a_device_name_is_parsed_or_refused_in_one_line():
    assert parse_device("cuda:1") == torch.device("cuda", 1)  # even without a GPU here
    with pytest.raises(TBPTTError, match="is not a device name; use cpu, cuda or cuda:N"):
        parse_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_missing_gpu_is_named():
    with pytest.raises(TBPTTError, match="this machine has no CUDA GPU; use cpu"):
        device_of("cuda")


def test_the_machine_record_names_hardware_versions_and_threads():
    record = machine("cpu")
    assert record["cpu"] and record["cpu_count"] >= 1
    assert record["torch"] == torch.__version__ and record["tbptt"] == tbptt.__version__
    assert record["torch_num_threads"] == torch.get_num_threads()
    assert record["device"] == "cpu" and "gpu" not in record
    assert json.loads(json.dumps(record)) == record  # plain data, for results.json
