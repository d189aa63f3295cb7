"""A catalogue of bad input to the ``tbptt`` command.

Each case ends the command with exit code 2 and one line on stderr that names the
problem and the fix, no traceback, and leaves every file as it was: no run
overwritten, no half-made run directory, no checkpoint changed. The cases run
in-process (``tbptt.cli.main``) against one shared folder of files and finished
runs, which is compared byte for byte before and after; a few run end to end in a
subprocess.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

import tbptt
from tbptt.cli.main import main
from tbptt.data import Vocabulary
from tbptt.training import checkpoints
from tests.refusals import assert_refused, run_cli, snapshot

SMALL = ["--hidden-size", "8", "--num-layers", "1", "--k1", "8", "--batch-size", "4"]
NEW = [*SMALL, "--max-windows", "2", "--quiet", "--run-dir", "new"]
"""A new run's options: small, and a run directory that must not appear."""


class Exploit:
    """Unpickling this runs a shell command: a checkpoint from the internet."""

    def __reduce__(self):
        return (os.system, ("echo pwned > pwned",))


def write_files(root: Path) -> None:
    """Data and config files, good and bad."""
    text = "".join("abcde \n"[(i * 7 + i // 5) % 7] for i in range(3000))
    (root / "corpus.txt").write_text(text)
    (root / "empty.txt").touch()
    (root / "folder").mkdir()
    (root / "latin1.txt").write_bytes("café au lait\n".encode("latin-1"))
    (root / "short.txt").write_text("ab")
    rows = "\n".join(f"{i % 7},{i % 5}" for i in range(300))
    (root / "series.csv").write_text(f"a,b\n{rows}\n")
    (root / "other.csv").write_text(f"x,y\n{rows}\n")
    (root / "textcell.csv").write_text("a,b\n1,2\n3,x\n")
    (root / "nan.csv").write_text("a,b\n1,2\nnan,3\n")
    (root / "inf.csv").write_text("a,b\n1,2\n-inf,3\n")
    (root / "ragged.csv").write_text("a,b\n1,2\n3\n")
    (root / "header.csv").write_text("a,b\n")
    (root / "wide.csv").write_text("a,b\n1,2\n3," + "7" * 140_000 + "\n")
    (root / "underscore.csv").write_text("a,b\n1,2\n1_000,3\n")
    (root / "odd.bin").write_bytes(b"\x01\x00\x02")
    np.save(root / "ids.npy", np.arange(50) % 10)
    np.save(root / "sparse.npy", np.array([0, 1, 10**12] * 20, dtype=np.int64))
    Vocabulary.build("abcd").save(root / "vocab.json")
    (root / "broken.json").write_text('{"format": ')
    (root / "list.json").write_text("[1, 2, 3]")
    configs = {
        "unknown.toml": "[train]\nlrr = 0.1\n",
        "type.toml": "[train]\nlr = 'fast'\n",
        "bool.toml": "[train]\nk1 = true\n",
        "syntax.toml": "[train\nlr = 0.1\n",
        "section.toml": "[model]\nlr = 0.1\n",
        "top.toml": "[trian]\nlr = 0.1\n",
        "flat.toml": "train = 3\n",
        "negative.toml": "[train]\nlr = -1\n",
        "seed.toml": f"[train]\nseed = {2**64}\n",
    }
    for name, content in configs.items():
        (root / name).write_text(content)
    (root / "latin1.toml").write_bytes("# é\n".encode("latin-1"))
    deep = "[" * 100_000 + "]" * 100_000
    (root / "deep.json").write_text(deep)
    (root / "deep.toml").write_text(f"[train]\nlr = {deep}\n")
    (root / "deepvocab.json").write_text(f'{{"format": "tbptt-vocabulary", "tokens": {deep}}}')


def flip_a_bit(data: bytes, payload: dict) -> bytes:
    """``data`` with one bit flipped inside the bytes of the model's first tensor."""
    tensor = next(iter(payload["model"].values()))
    at = data.index(tensor.numpy().tobytes())
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


def write_checkpoints(root: Path) -> None:
    """Checkpoints that are damaged, malicious, foreign, or of another model."""
    good = root / "runs" / "text" / "checkpoints" / "latest.pt"
    (root / "truncated.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    torch.save({"format": "tbptt-checkpoint", "version": 1, "x": Exploit()}, root / "evil.pt")
    (root / "flipped.pt").write_bytes(flip_a_bit(good.read_bytes(), checkpoints.load(good)))
    torch.save({"weight": torch.zeros(2)}, root / "foreign.pt")
    payload = checkpoints.load(good)
    checkpoints.save(root / "future.pt", {**payload, "version": 99})
    checkpoints.save(root / "library.pt", {"model": payload["model"]})
    config = payload["extra"]["config"]
    train = {**config["train"], "max_windows": 6}  # unfinished, so a resume tries it
    wider = {**config, "model": {**config["model"], "hidden_size": 16}, "train": train}
    other = {**payload, "extra": {**payload["extra"], "config": wider}}
    (root / "mismatch" / "checkpoints").mkdir(parents=True)
    checkpoints.save(root / "mismatch" / "checkpoints" / "latest.pt", other)
    nested: list = []
    for _ in range(3000):  # deeper than Python's recursion limit lets the checksum go
        nested = [nested]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # to write it
    try:
        torch.save({**payload, "extra": nested}, root / "deep.pt")
    finally:
        sys.setrecursionlimit(limit)
    edits = {
        "vocabnotokens.pt": {"vocabulary": {"level": "char"}},
        "vocabstring.pt": {"vocabulary": "abcd"},
        "sizestring.pt": {"sizes": {"vocab_size": "5"}},
    }
    for name, edit in edits.items():
        checkpoints.save(root / name, {**payload, "extra": {**payload["extra"], **edit}})
    series = checkpoints.load(root / "runs" / "series" / "checkpoints" / "latest.pt")
    forecast = series["extra"]["forecast"]
    zero = {**forecast, "transforms": {**forecast["transforms"], "horizon": 0}}
    checkpoints.save(
        root / "horizonzero.pt", {**series, "extra": {**series["extra"], "forecast": zero}}
    )
    data = {**config["data"], "text": "/etc/passwd"}
    crafted = {**payload["extra"], "config": {**config, "data": data}}
    checkpoints.save(root / "crafted.pt", {**payload, "extra": crafted})
    shutil.copytree(root / "runs" / "text", root / "craftedrun")
    checkpoints.save(root / "craftedrun" / "checkpoints" / "best.pt", {**payload, "extra": crafted})
    shutil.copy(good, root / "lone.pt")
    os.mkfifo(root / "fifo")
    position = {**payload["position"], "window": "3"}
    checkpoints.save(root / "positionstring.pt", {**payload, "position": position})
    (root / "notrun").mkdir()
    (root / "notrun" / "notes.txt").write_text("not a run")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The shared folder: files, two finished runs and bad checkpoints."""
    root = tmp_path_factory.mktemp("world")
    write_files(root)
    for source, data, name in (("--text", "corpus.txt", "text"), ("--csv", "series.csv", "series")):
        run_dir = root / "runs" / name
        argv = ["train", source, str(root / data), *SMALL, "--max-windows", "3", "--quiet"]
        assert main([*argv, "--run-dir", str(run_dir)]) == 0
    write_checkpoints(root)
    return root


CASES = {
    # files that are not there, not files, empty, or not text
    "missing text file": (["train", "--text", "nope.txt", *NEW], ("no such text file",)),
    "empty text file": (["train", "--text", "empty.txt", *NEW], ("empty", "holds data")),
    "folder as a file": (["train", "--text", "folder", *NEW], ("is a folder, not a file",)),
    "undecodable text": (
        ["train", "--text", "latin1.txt", *NEW],
        ("latin1.txt: line 1, byte 4", "not valid UTF-8", "iconv"),
    ),
    "text too short to split": (["train", "--text", "short.txt", *NEW], ("validation part",)),
    # CSV files
    "CSV text cell": (
        ["train", "--csv", "textcell.csv", *NEW],
        ("line 3, column 'b'", "'x' is not a number", "write a number"),
    ),
    "CSV NaN": (["train", "--csv", "nan.csv", *NEW], ("line 3", "'nan' is not finite")),
    "CSV inf": (["train", "--csv", "inf.csv", *NEW], ("line 3", "'-inf' is not finite")),
    "CSV missing column": (
        ["train", "--csv", "series.csv", "--inputs", "c", *NEW],
        ("no column 'c'", "'a', 'b'"),
    ),
    "CSV column named twice": (
        ["train", "--csv", "series.csv", "--inputs", "a", "a", *NEW],
        ("names a column twice",),
    ),
    "CSV ragged row": (
        ["train", "--csv", "ragged.csv", *NEW],
        ("line 3: 1 cells, but the header has 2 columns",),
    ),
    "CSV without data rows": (["train", "--csv", "header.csv", *NEW], ("no data rows",)),
    "CSV cell over 131,072 characters": (
        ["train", "--csv", "wide.csv", *NEW],
        ("line 3: a cell is longer than 131,072 characters",),
    ),
    "CSV number with underscores": (
        ["train", "--csv", "underscore.csv", *NEW],
        ("line 3, column 'a'", "'1_000' is not a number"),
    ),
    "CSV columns for a text file": (
        ["train", "--text", "corpus.txt", "--inputs", "a", *NEW],
        ("--inputs is for a csv file (--csv)", "drop it"),
    ),
    "word level for a CSV file": (
        ["train", "--csv", "series.csv", "--level", "word", *NEW],
        ("--level is for a text file (--text)",),
    ),
    "dtype that a .npy token file does not hold": (
        ["train", "--tokens", "ids.npy", "--dtype", "uint32", *NEW],
        ("holds int64 ids but dtype='uint32' was given",),
    ),
    # token files and vocabularies
    "token file of odd size": (
        ["train", "--tokens", "odd.bin", *NEW],
        ("not a whole number of uint16 ids",),
    ),
    "ids outside the vocabulary": (
        ["train", "--tokens", "ids.npy", "--vocabulary", "vocab.json", *NEW],
        ("holds id 9, outside the vocabulary's 5 ids",),
    ),
    "vocabulary not JSON": (
        ["train", "--tokens", "ids.npy", "--vocabulary", "broken.json", *NEW],
        ("not valid JSON",),
    ),
    "vocabulary not a vocabulary": (
        ["train", "--tokens", "ids.npy", "--vocabulary", "list.json", *NEW],
        ("not a vocabulary",),
    ),
    "vocabulary without a token file": (
        ["train", "--text", "corpus.txt", "--vocabulary", "vocab.json", *NEW],
        ("vocabulary is for a token file",),
    ),
    # shapes and sizes
    "shorter than one window": (
        ["train", "--text", "corpus.txt", *NEW, "--k1", "5000", "--batch-size", "1"],
        ("shorter than one window of 5000",),
    ),
    "batch larger than the data": (
        ["train", "--text", "corpus.txt", *NEW, "--batch-size", "5000"],
        ("batch_size 5000 is larger than the data", "lower batch_size"),
    ),
    "k1 > k2": (["train", "--text", "corpus.txt", *NEW, "--k2", "4"], ("k1=8 > k2=4",)),
    "zero k1": (["train", "--text", "corpus.txt", *NEW, "--k1", "0"], ("k1 must be >= 1",)),
    "zero hidden size": (
        ["train", "--text", "corpus.txt", *NEW, "--hidden-size", "0"],
        ("hidden_size must be >= 1, got 0",),
    ),
    "unknown initialisation": (
        ["train", "--text", "corpus.txt", *NEW, "--init", "uniform"],
        ("init 'uniform' is unknown", "uniform:A"),
    ),
    "uniform initialisation beyond float32": (
        ["train", "--text", "corpus.txt", *NEW, "--init", "uniform:1e308"],
        ("init 'uniform:1e308': A is above 3.403e+38, the largest float32",),
    ),
    "forget bias beyond float32": (
        ["train", "--text", "corpus.txt", *NEW, "--forget-bias=-1e39"],
        ("forget_bias -1e+39 is beyond 3.403e+38, the largest float32",),
    ),
    "forget bias for a GRU": (
        ["train", "--text", "corpus.txt", *NEW, "--cell", "gru", "--forget-bias", "1"],
        ("forget_bias is for an LSTM", "--cell lstm"),
    ),
    "negative activation penalty": (
        ["train", "--text", "corpus.txt", *NEW, "--activation-penalty", "-2"],
        ("activation_penalty must be finite and >= 0, got -2.0",),
    ),
    "plateau factor of 1": (
        ["train", "--text", "corpus.txt", *NEW, "--schedule", "plateau", "--plateau-factor", "1"],
        ("plateau_factor divides the learning rate", "> 1, got 1.0"),
    ),
    "negative batch size": (
        ["train", "--text", "corpus.txt", *NEW, "--batch-size", "-1"],
        ("batch_size must be >= 1, got -1",),
    ),
    "NaN learning rate": (
        ["train", "--text", "corpus.txt", *NEW, "--lr", "nan"],
        ("lr must be finite and > 0",),
    ),
    "learning rate not a number": (
        ["train", "--text", "corpus.txt", *NEW, "--lr", "fast"],
        ("'fast' is not a number", "--help"),
    ),
    "unknown device": (
        ["train", "--text", "corpus.txt", *NEW, "--device", "tpu"],
        ("device 'tpu'", "use cpu, cuda or cuda:N"),
    ),
    "no data source": (["train", *NEW], ("exactly one data source, got none",)),
    "two data sources": (
        ["train", "--text", "corpus.txt", "--csv", "series.csv", *NEW],
        ("got --text and --csv",),
    ),
    "unknown task": (["train", "--task", "copyy", *NEW], ("did you mean 'copy'?",)),
    # config files
    "config not found": (
        ["train", "--config", "nope.toml", "--text", "corpus.txt", *NEW],
        ("no such config file",),
    ),
    "config unknown key": (
        ["train", "--config", "unknown.toml", "--text", "corpus.txt", *NEW],
        ("[train] has no key 'lrr'", "did you mean 'lr'?"),
    ),
    "config wrong type": (
        ["train", "--config", "type.toml", "--text", "corpus.txt", *NEW],
        ("[train] lr: expected a number, got 'fast'",),
    ),
    "config bool for an integer": (
        ["train", "--config", "bool.toml", "--text", "corpus.txt", *NEW],
        ("[train] k1: expected an integer", "True (bool)"),
    ),
    "config bad TOML": (
        ["train", "--config", "syntax.toml", "--text", "corpus.txt", *NEW],
        ("not valid TOML", "line 1", "fix the syntax"),
    ),
    "config key in the wrong section": (
        ["train", "--config", "section.toml", "--text", "corpus.txt", *NEW],
        ("[model] has no key 'lr'", "it belongs in [train]"),
    ),
    "config unknown section": (
        ["train", "--config", "top.toml", "--text", "corpus.txt", *NEW],
        ("unknown key 'trian'", "did you mean 'train'?"),
    ),
    "config section not a table": (
        ["train", "--config", "flat.toml", "--text", "corpus.txt", *NEW],
        ("train must be a section [train]",),
    ),
    "config value out of range": (
        ["train", "--config", "negative.toml", "--text", "corpus.txt", *NEW],
        ("negative.toml: lr must be finite and > 0",),
    ),
    "config not UTF-8": (
        ["train", "--config", "latin1.toml", "--text", "corpus.txt", *NEW],
        ("not valid UTF-8",),
    ),
    "config nested 100,000 deep (JSON)": (
        ["train", "--config", "deep.json", "--text", "corpus.txt", *NEW],
        ("deep.json: is nested too deeply to read",),
    ),
    "config nested 100,000 deep (TOML)": (
        ["train", "--config", "deep.toml", "--text", "corpus.txt", *NEW],
        ("deep.toml: is nested too deeply to read",),
    ),
    "vocabulary nested 100,000 deep": (
        ["train", "--tokens", "ids.npy", "--vocabulary", "deepvocab.json", *NEW],
        ("deepvocab.json: is nested too deeply to read",),
    ),
    "checkpoint nested 3,000 deep": (["eval", "deep.pt"], ("deep.pt: is nested too deeply",)),
    # run directories
    "existing run without --overwrite": (
        ["train", "--text", "corpus.txt", *NEW, "--run-dir", "runs/text"],
        ("the run directory exists", "--overwrite", "--resume runs/text"),
    ),
    "overwriting a folder that is no run": (
        ["train", "--text", "corpus.txt", *NEW, "--run-dir", "notrun", "--overwrite"],
        ("no config.json", "not a run to overwrite"),
    ),
    "empty run directory name": (
        ["train", "--text", "corpus.txt", *NEW, "--run-dir", ""],
        ("run_dir '' names no folder",),
    ),
    "run directory that is a file": (
        ["train", "--text", "corpus.txt", *NEW, "--run-dir", "corpus.txt"],
        ("is a file, not a run directory",),
    ),
    "resume a folder that is no run": (
        ["train", "--resume", "notrun"],
        ("holds no checkpoints/latest.pt",),
    ),
    "resume a missing run": (["train", "--resume", "nowhere"], ("is not a run directory",)),
    "resume changing the learning rate": (
        ["train", "--resume", "runs/text", "--lr", "0.1"],
        ("--lr cannot change", "start a new run"),
    ),
    "resume with a config": (
        ["train", "--resume", "runs/text", "--config", "type.toml"],
        ("drop --config",),
    ),
    "resume a finished run": (
        ["train", "--resume", "runs/text"],
        ("the run is complete", "raise --epochs or --max-windows"),
    ),
    "resume a checkpoint of another model": (
        ["train", "--resume", "mismatch"],
        ("does not fit this run", "size mismatch"),
    ),
    # checkpoints
    "checkpoint not found": (["eval", "nope.pt"], ("no such checkpoint",)),
    "folder that is no run as a checkpoint": (["eval", "notrun"], ("not a run directory",)),
    "text file as a checkpoint": (["eval", "corpus.txt"], ("not a PyTorch file",)),
    "truncated checkpoint": (["eval", "truncated.pt"], ("damaged or truncated", "best.pt")),
    "checkpoint with a flipped bit": (
        ["eval", "flipped.pt"],
        ("is damaged: its contents do not match the checksum", "best.pt or an earlier"),
    ),
    "checkpoint that runs code": (
        ["generate", "evil.pt"],
        ("safe loading refuses", "could run code"),
    ),
    "foreign checkpoint": (["eval", "foreign.pt"], ("not a tbptt checkpoint",)),
    "checkpoint of a newer version": (["eval", "future.pt"], ("checkpoint version 99",)),
    "checkpoint without a run config": (["eval", "library.pt"], ("holds no run config",)),
    "checkpoint vocabulary without tokens": (
        ["eval", "vocabnotokens.pt"],
        ("vocabnotokens.pt: extra.vocabulary.tokens: is None, not a list", "unedited"),
    ),
    "checkpoint vocabulary that is a string": (
        ["generate", "vocabstring.pt"],
        ("vocabstring.pt: extra.vocabulary: is 'abcd', not a table",),
    ),
    "checkpoint size given as a string": (
        ["eval", "sizestring.pt"],
        ("sizestring.pt: extra.sizes.vocab_size: is '5', not an integer >= 1",),
    ),
    "checkpoint position given as a string": (
        ["eval", "positionstring.pt"],
        ("positionstring.pt: position.window: is '3', not an integer >= 0",),
    ),
    "checkpoint of a CSV run with a horizon of 0": (
        ["eval", "horizonzero.pt", "series.csv"],
        ("horizonzero.pt: extra.forecast.transforms.horizon: is 0, not an integer >= 1",),
    ),
    "checkpoint whose weights do not fit": (
        ["eval", "mismatch"],
        ("its weights do not fit its config",),
    ),
    # files a checkpoint names, and files that are not regular files
    "eval of a lone checkpoint naming /etc/passwd": (
        ["eval", "crafted.pt"],
        ("crafted.pt: names data files ('/etc/passwd')", "tbptt eval CHECKPOINT FILE"),
    ),
    "eval of a run whose checkpoint names another file than its config.json": (
        ["eval", "craftedrun"],
        ("best.pt: names data files ('/etc/passwd')", "its config.json names others"),
    ),
    "advise on a lone checkpoint without FILE": (
        ["advise", "lone.pt", "--steps", "16"],
        ("lone.pt: names data files", "no run directory around it"),
    ),
    "advise on a sample too short for any candidate": (
        ["advise", "runs/text", "--steps", "1"],
        ("leaves no truncation to compare with full BPTT", "raise --steps"),
    ),
    "eval on a FIFO": (["eval", "runs/text", "fifo"], ("is not a regular file (a FIFO)",)),
    "eval on /dev/zero": (
        ["eval", "runs/text", "/dev/zero"],
        ("/dev/zero: is not a regular file (a character device)",),
    ),
    "eval on a /proc file": (
        ["eval", "runs/text", "/proc/self/status"],
        ("is not a regular file (a kernel file under /proc or /sys)",),
    ),
    "train on a FIFO": (["train", "--text", "fifo", *NEW], ("is not a regular file (a FIFO)",)),
    "eval file missing the run's columns": (
        ["eval", "runs/series", "other.csv"],
        ("no column 'a'",),
    ),
    "eval file not UTF-8": (["eval", "runs/text", "latin1.txt"], ("not valid UTF-8",)),
    "eval on a folder": (["eval", "runs/text", "folder"], ("is a folder, not a file",)),
    "generate from a forecasting run": (
        ["generate", "runs/series"],
        ("generate needs a language model", "trained on --csv"),
    ),
    "generate a negative length": (
        ["generate", "runs/text", "--length", "-3"],
        ("length must be >= 0, got -3",),
    ),
    "seed of 2**64": (
        ["train", "--text", "corpus.txt", *NEW, "--seed", str(2**64)],
        ("seed must be an integer from 0 to 2**63 - 1",),
    ),
    "config seed of 2**64": (
        ["train", "--config", "seed.toml", "--text", "corpus.txt", *NEW],
        ("seed.toml: seed must be an integer from 0 to 2**63 - 1",),
    ),
    "fp16 on a CPU": (
        ["train", "--text", "corpus.txt", *NEW, "--precision", "fp16", "--device", "cpu"],
        ("precision fp16 needs a GPU", "--precision bf16"),
    ),
    "randomised truncation of infinite spread": (
        ["train", "--text", "corpus.txt", *NEW, "--k1-std", "inf"],
        ("k1_std needs a k1 and must be >= 0 and finite, got inf",),
    ),
    "a billion threads": (
        ["train", "--text", "corpus.txt", *NEW, "--threads", str(10**9)],
        ("threads 1,000,000,000 is more than the", "this process may use", "give at most"),
    ),
    "demo with a billion threads": (
        ["demo", "--threads", str(10**9)],
        ("threads 1,000,000,000 is more than the",),
    ),
    "generate with a seed of 2**64": (
        ["generate", "runs/text", "--seed", str(2**64)],
        ("seed must be an integer from 0 to 2**63 - 1",),
    ),
    "generate at a temperature too low to compute": (
        ["generate", "runs/text", "--temperature", "1e-300"],
        ("temperature must be finite and 0", "logits / temperature overflow"),
    ),
    "learning rate that overflows a float32 step": (
        ["train", "--text", "corpus.txt", *NEW, "--lr", "1e38"],
        ("lr must be finite and > 0 and at most 1e+30",),
    ),
    "demo on a device that does not exist": (
        ["demo", "--device", "tpu"],
        ("device 'tpu' is not a device name",),
    ),
    "demo on CUDA without a GPU": (
        ["demo", "--device", "cuda:7"],
        ("device 'cuda:7'",),
    ),
    # sizes that cannot fit in memory: refused with the figure before anything is allocated
    "hidden size too large for memory": (
        ["train", "--text", "corpus.txt", *NEW, "--hidden-size", "1000000"],
        ("this needs about", "parameters, gradients and optimizer state", "more than the"),
    ),
    "task of 10**9 sequences": (
        ["train", "--task", "copy", "--num-sequences", "1000000000", *NEW],
        ("this needs about", "(data ", "more than the", "--num-sequences"),
    ),
    "token ids up to 10**12 without a vocabulary": (
        ["train", "--tokens", "sparse.npy", *NEW],
        ("this needs about", "parameters", "--vocabulary for a token file"),
    ),
    "demo delay too long for memory": (
        ["demo", "--delay", "10000000"],
        ("this needs about", "(data ", "lower --delay"),
    ),
    "generate at infinite temperature": (
        ["generate", "runs/text", "--temperature", "inf"],
        ("temperature must be finite",),
    ),
}


@pytest.mark.parametrize(("argv", "fragments"), CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_in_one_line_and_changes_nothing(
    world, monkeypatch, capsys, argv, fragments
):
    monkeypatch.chdir(world)
    assert_refused(argv, fragments, world, capsys)


def test_the_catalogue_holds_over_thirty_distinct_bad_inputs():
    assert len(CASES) >= 30
    assert len({tuple(argv) for argv, _ in CASES.values()}) == len(CASES)


def test_a_run_that_diverges_stops_in_one_line_and_leaves_nothing(world, monkeypatch, capsys):
    real = tbptt.losses.cross_entropy
    monkeypatch.setattr(tbptt.losses, "cross_entropy", lambda o, t: real(o, t) * math.nan)
    monkeypatch.chdir(world)
    argv = ["train", "--text", "corpus.txt", *NEW, "--max-skips", "2", "--max-rollbacks", "2"]
    line = assert_refused(argv, ("training diverged at update 1", "lower --lr"), world, capsys)
    assert "2 rollbacks (learning rate lowered to 0.0005)" in line


def test_a_lone_checkpoint_is_evaluated_on_the_file_the_user_names(world, monkeypatch, capsys):
    monkeypatch.chdir(world)
    code, err = run_cli(["eval", "lone.pt", "corpus.txt", "--json"], capsys)
    assert code == 0, err
    code, err = run_cli(["eval", "crafted.pt", "corpus.txt", "--json"], capsys)
    assert code == 0, err  # the user named the file: the checkpoint's path is not read


@pytest.mark.parametrize("level", ["char", "word"])
def test_a_vocabulary_token_of_megabytes_is_refused_in_a_short_line(
    world, tmp_path, monkeypatch, capsys, level
):
    token = "x" * 2_000_000  # one "word"; 200 MB ones gave a 200 MB line
    document = {"format": "tbptt-vocabulary", "version": 1, "level": level}
    (tmp_path / "huge.json").write_text(json.dumps({**document, "tokens": ["<unk>", token]}))
    monkeypatch.chdir(world)
    argv = ["train", "--tokens", "ids.npy", "--vocabulary", str(tmp_path / "huge.json"), *NEW]
    line = assert_refused(argv, ("token 1 is 2,000,000 characters long",), world, capsys)
    assert len(line) < 400


def test_a_word_of_megabytes_in_a_text_is_refused_in_a_short_line(
    world, tmp_path, monkeypatch, capsys
):
    (tmp_path / "blob.txt").write_text("a few words\n" + "x" * 2_000_000 + "\n")
    monkeypatch.chdir(world)
    argv = ["train", "--text", str(tmp_path / "blob.txt"), "--level", "word", *NEW]
    line = assert_refused(argv, ("a token of 2,000,000 characters", "level 'char'"), world, capsys)
    assert len(line) < 400


def test_a_csv_cell_of_megabytes_is_quoted_in_a_short_line(world, tmp_path, monkeypatch, capsys):
    (tmp_path / "wide.csv").write_text("a,b\n1,2\n3," + "y" * 100_000 + "\n" + "4,5\n" * 50)
    monkeypatch.chdir(world)
    argv = ["train", "--csv", str(tmp_path / "wide.csv"), *NEW]
    line = assert_refused(
        argv, ("line 3, column 'b'", "(100,000 characters) is not a number"), world, capsys
    )
    assert len(line) < 400


@contextmanager
def full_disk_write(path):
    """An ``atomic_write`` whose disk fills up halfway through the checkpoint."""

    class HalfWritten:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            self.file.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with real_atomic_write(path) as file:
        yield HalfWritten(file)


real_atomic_write = checkpoints.atomic_write


def test_a_full_disk_at_the_first_checkpoint_leaves_no_run(world, monkeypatch, capsys):
    monkeypatch.setattr(checkpoints, "atomic_write", full_disk_write)
    monkeypatch.chdir(world)
    assert_refused(
        ["train", "--text", "corpus.txt", *NEW],
        ("new: writing the run failed (No space left on device)", "start the run again"),
        world,
        capsys,
    )


def test_a_full_disk_keeps_the_last_checkpoint_and_says_how_to_resume(
    world, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "run"
    shutil.copytree(world / "runs" / "text", run_dir)
    latest = run_dir / "checkpoints" / "latest.pt"
    before = latest.read_bytes()
    monkeypatch.setattr(checkpoints, "atomic_write", full_disk_write)
    code, err = run_cli(["train", "--resume", str(run_dir), "--max-windows", "6"], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "No space left on device" in err and f"tbptt train --resume {run_dir}" in err
    assert latest.read_bytes() == before
    assert list(latest.parent.glob(".*")) == []  # the half-written file is gone
    monkeypatch.undo()  # space freed: the run goes on from its last checkpoint
    code, err = run_cli(["train", "--resume", str(run_dir), "--max-windows=6", "--quiet"], capsys)
    assert code == 0, err
    assert checkpoints.load(latest)["position"]["window"] == 6


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train", "--text", "nope.txt", *NEW], "no such text file"),
        (["train", "--config", "syntax.toml", "--text", "corpus.txt", *NEW], "not valid TOML"),
        (["eval", "evil.pt"], "could run code"),
    ],
    ids=["missing file", "bad config", "malicious checkpoint"],
)
def test_the_command_exits_with_2_and_no_traceback(world, argv, fragment):
    before = snapshot(world)
    done = subprocess.run(
        [sys.executable, "-m", "tbptt", *argv],
        cwd=world,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert fragment in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert snapshot(world) == before and not (world / "pwned").exists()
