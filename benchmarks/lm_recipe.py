"""pytorch/examples' word language model: its recipe through ``tbptt train --config``
beside the plain PyTorch loop, on a word corpus made from tiny shakespeare.

The corpus (``build_corpus``): the text lower-cased, words and punctuation marks as
tokens (``"o, romeo!"`` is ``o , romeo !``), one line of the source per line, cut by
lines into contiguous train / valid / test parts (80 / 10 / 10), and words seen fewer
than ``MIN_COUNT`` times in train written as ``<unk>`` in every part, as the Penn
Treebank's preprocessing does: a closed vocabulary, so every test word is in it.

The arms, each a fresh process with one torch thread:

    tbptt    tbptt train --config examples/language_model/pytorch_examples.toml
             --text train.txt --validation-file valid.txt --test-file test.txt
    plain    pytorch/examples' main.py loop on benchmarks/loops.py's PlainNetwork and
             PlainLoop: batchify into 20 streams, 35-step chunks with the state
             repackaged, SGD at lr 20 with gradients clipped to 0.25, the learning
             rate / 4 after an epoch whose validation loss is not the best, the best
             epoch's weights scored on test, evaluation in 10 streams
    awd      (with --awd) examples/language_model/awd_lstm.toml at the example's size
             (2 x 200, batch 20): AWD-LSTM's regularisers, AR/TAR and NT-ASGD

The same model (the recipe's config file builds both, from the same seed, with the
same vocabulary: tbptt's, from train.txt), the same files and the same epochs. The
arms run at once and take turns on the CPU in slices of ``--slice`` seconds
(SIGSTOP / SIGCONT), so drifts of a shared machine hit them alike; each arm's CPU time
and peak resident memory are its process's (``wait4``), start-up included. Beside
them: a unigram model's test perplexity (training-set frequencies), the simplest
baseline.

    python benchmarks/lm_recipe.py                   # 8 epochs: about 12 minutes of CPU
    python benchmarks/lm_recipe.py --awd             # and the AWD arm: about 7 more
    python benchmarks/lm_recipe.py --quick           # a smoke run: 5% of the text
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from harness import CHILD_ENVIRONMENT, RESULTS, load_average, machine, write_json
from loops import PlainLoop, PlainNetwork

import tbptt
from tbptt.cli.commands import build_model
from tbptt.cli.runconfig import read_config_file, resolve
from tbptt.data import Vocabulary
from tbptt.data.text import read_text
from tbptt.engine.state import map_state
from tbptt.training import checkpoints

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "examples" / "language_model" / "pytorch_examples.toml"
AWD_RECIPE = ROOT / "examples" / "language_model" / "awd_lstm.toml"
SOURCE = Path("/work/shared/data/tinyshakespeare.txt")
MIN_COUNT = 3
"""Words seen fewer times than this in the training part are ``<unk>``."""
SPLITS = {"train": 0.8, "valid": 0.1, "test": 0.1}
EVAL_BATCH = 10
"""pytorch/examples' evaluation batch size (``eval_batch_size = 10``)."""
AWD_SIZE = ["--hidden-size", "200", "--embedding-size", "200", "--batch-size", "20"]


# --------------------------------------------------------------------------- corpus


def words(line: str) -> list[str]:
    """A line's tokens: lower-cased words (with inner apostrophes) and punctuation."""
    return re.findall(r"[a-z]+(?:'[a-z]+)*|[^\sa-z]", line.lower())


def build_corpus(source: Path, out: Path, fraction: float = 1.0) -> dict[str, Path]:
    """Write ``train.txt``, ``valid.txt`` and ``test.txt`` under ``out`` from the first
    ``fraction`` of ``source``'s lines (see the module docstring)."""
    lines = source.read_text(encoding="utf-8").splitlines()
    lines = [words(line) for line in lines[: int(len(lines) * fraction)]]
    bounds, start = {}, 0
    for name, share in SPLITS.items():
        end = start + round(share * len(lines)) if name != "test" else len(lines)
        bounds[name], start = (start, end), end
    counts = collections.Counter(w for line in lines[slice(*bounds["train"])] for w in line)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (first, last) in bounds.items():
        text = "".join(
            " ".join(w if counts[w] >= MIN_COUNT else "<unk>" for w in line) + "\n"
            for line in lines[first:last]
        )
        paths[name] = out / f"{name}.txt"
        paths[name].write_text(text, encoding="utf-8")
    return paths


def unigram_perplexity(paths: dict[str, Path]) -> float:
    """exp of the mean negative log frequency, in train, of each test token but the
    first (the tokens a language model predicts)."""
    vocabulary = Vocabulary.build(read_text(paths["train"]), "word")
    counts = torch.bincount(vocabulary.encode(read_text(paths["train"])), minlength=len(vocabulary))
    test = vocabulary.encode(read_text(paths["test"]))[1:]
    assert bool((counts[test] > 0).all()), "a closed vocabulary: every test token seen in train"
    log_p = counts[test].double().log() - math.log(int(counts.sum()))
    return math.exp(-float(log_p.mean()))


# --------------------------------------------------------------------------- the plain arm


class ExamplesNetwork(PlainNetwork):
    """pytorch/examples' ``RNNModel``: dropout on the embedding and on the last layer's
    outputs (between layers, ``nn.LSTM``'s own), on the built-in network's weights."""

    def __init__(self, network: tbptt.models.RecurrentNetwork) -> None:
        super().__init__(network)
        self.drop = network.dropout

    def forward(self, inputs, hidden):
        outputs, hidden = self.rnn(self.drop(self.embedding(inputs)), hidden)
        return self.head(self.drop(outputs)), hidden


class ExamplesLoop(PlainLoop):
    """benchmarks/loops.py's plain loop with the example's gradient clipping."""

    def __init__(self, network, chunks, lr: float, clip: float) -> None:
        super().__init__(network, chunks, "sgd", lr)
        self.model, self.clip = ExamplesNetwork(network), clip
        self.start_hidden = self.hidden

    def train_step(self, inputs, targets, resets=None):
        logits, hidden = self.model(inputs, self.hidden)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.hidden = tbptt.detach(hidden)
        return loss


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """pytorch/examples' ``batchify``: ``(N,)`` to ``(N // B, B)``, one stream per column."""
    steps = len(ids) // batch_size
    return ids[: steps * batch_size].view(batch_size, steps).t().contiguous()


def chunks(data: torch.Tensor, bptt: int) -> list[tuple[torch.Tensor, torch.Tensor, None]]:
    """pytorch/examples' ``get_batch`` at every ``bptt`` steps: inputs and targets."""
    return [
        (data[i : i + min(bptt, len(data) - 1 - i)], data[i + 1 : i + 1 + bptt], None)
        for i in range(0, len(data) - 1, bptt)
    ]


@torch.no_grad()
def evaluate(model: ExamplesNetwork, data: torch.Tensor, bptt: int, hidden) -> float:
    """pytorch/examples' ``evaluate``: the mean loss over every prediction, in chunks."""
    model.eval()
    total = 0.0
    for inputs, targets, _ in chunks(data, bptt):
        logits, hidden = model(inputs, hidden)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))
        total += len(inputs) * float(loss)
    model.train()
    return total / (len(data) - 1)


def plain_arm(recipe: Path, paths: dict[str, Path], epochs: int) -> dict:
    """The plain arm in this process: per-epoch validation loss, the test loss of the
    best epoch's weights."""
    torch.set_num_threads(1)
    config = resolve(read_config_file(str(recipe)), {"data": {"text": str(paths["train"])}})
    vocabulary = Vocabulary.build(read_text(paths["train"]), "word")
    ids = {name: vocabulary.encode(read_text(path)) for name, path in paths.items()}
    torch.manual_seed(config.train.seed)  # as tbptt train seeds before building the model
    network = build_model(config.model, {"vocab_size": len(vocabulary)})
    torch.manual_seed(config.train.seed)  # as tbptt's Trainer seeds its dropout
    bptt, batch = config.train.k1, config.data.batch_size
    assert isinstance(bptt, int) and config.train.clip_norm is not None
    train = chunks(batchify(ids["train"], batch), bptt)
    held_out = {name: batchify(ids[name], EVAL_BATCH) for name in ("valid", "test")}
    loop = ExamplesLoop(network, train, config.train.lr, config.train.clip_norm)
    eval_hidden = map_state(lambda h: h[:, :EVAL_BATCH].clone(), loop.start_hidden)
    best, best_weights, curve = math.inf, None, []
    for _ in range(epochs):
        loop.hidden, loop.position = loop.start_hidden, 0  # init_hidden every epoch
        loop.block(len(train))
        loss = evaluate(loop.model, held_out["valid"], bptt, eval_hidden)
        curve.append(loss)
        if loss < best:
            best, best_weights = loss, {k: v.clone() for k, v in network.state_dict().items()}
        else:
            for group in loop.optimizer.param_groups:
                group["lr"] /= config.train.plateau_factor
    assert best_weights is not None
    network.load_state_dict(best_weights)
    test = evaluate(loop.model, held_out["test"], bptt, eval_hidden)
    return {"validation_curve": curve, "validation_loss": best, "test_loss": test}


# --------------------------------------------------------------------------- taking turns


def take_turns(commands: dict[str, list[str]], slice_seconds: float, logs: Path) -> dict:
    """Run ``commands`` at once, each running alone for ``slice_seconds`` in turn
    while the others are stopped; each one's CPU seconds, peak resident MB and wall
    seconds it ran."""
    env = {**os.environ, **CHILD_ENVIRONMENT, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    running: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
                process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
            os.kill(process.pid, signal.SIGSTOP)
            running[name] = process
        return turns(running, slice_seconds, logs)
    finally:
        for process in running.values():  # only if something failed: SIGKILL ends stopped ones
            if process.returncode is None:
                process.kill()
                process.wait()


def turns(running: dict[str, subprocess.Popen], slice_seconds: float, logs: Path) -> dict:
    """The turns of :func:`take_turns` until every process has ended."""
    results: dict[str, dict] = {}
    while running:
        for name in list(running):
            process = running[name]
            os.kill(process.pid, signal.SIGCONT)
            began = time.monotonic()
            while time.monotonic() - began < slice_seconds:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    process.returncode = os.waitstatus_to_exitcode(status)
                    break
                time.sleep(0.2)
            else:
                os.kill(process.pid, signal.SIGSTOP)
            ran = results.setdefault(name, {"wall_seconds": 0.0})
            ran["wall_seconds"] += time.monotonic() - began
            if process.returncode is not None:
                if process.returncode != 0:
                    error = (logs / f"{name}.err").read_text()[-2000:]
                    raise RuntimeError(f"arm {name} failed ({process.returncode}):\n{error}")
                ran["cpu_seconds"] = usage.ru_utime + usage.ru_stime
                ran["peak_resident_mb"] = usage.ru_maxrss * 1024 / 1e6  # Linux: kB
                del running[name]
    return results


def tbptt_command(recipe: Path, paths: dict[str, Path], run_dir: Path, args, extra=()) -> list:
    command = [sys.executable, "-m", "tbptt", "train", "--config", str(recipe)]
    command += ["--text", str(paths["train"]), "--validation-file", str(paths["valid"])]
    command += ["--test-file", str(paths["test"]), "--epochs", str(args.epochs)]
    command += ["--threads", "1", "--run-dir", str(run_dir), "--overwrite", "--quiet", *extra]
    return command


def tbptt_scores(run_dir: Path) -> dict:
    """Per-epoch validation losses from the run's metrics.jsonl; its best, and the test
    loss of ``tbptt eval RUN --split test --json`` (best.pt's weights)."""
    records = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    curve = [record["loss"] for record in records if record["kind"] == "eval"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "tbptt", "eval", str(run_dir), "--split", "test", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    test = json.loads(done.stdout)
    return {"validation_curve": curve, "validation_loss": min(curve), "test_loss": test["loss"]}


def examples_scores(run_dir: Path, paths: dict[str, Path]) -> dict:
    """A tbptt run's ``best.pt`` scored by the plain arm's evaluation (pytorch/examples'
    ``evaluate``: 10 streams, 35-step chunks), so every arm is also read by one
    evaluator."""
    config = resolve(read_config_file(str(run_dir / "config.json")), {})
    vocabulary = Vocabulary.build(read_text(paths["train"]), "word")
    network = build_model(config.model, {"vocab_size": len(vocabulary)})
    network.load_state_dict(checkpoints.load(run_dir / "checkpoints" / "best.pt")["model"])
    model = ExamplesNetwork(network)
    hidden = map_state(lambda h: h.transpose(0, 1), network.initial_state(EVAL_BATCH))
    scores = {}
    for split, name in (("validation", "valid"), ("test", "test")):
        data = batchify(vocabulary.encode(read_text(paths[name])), EVAL_BATCH)
        scores[f"{split}_perplexity_examples_evaluate"] = math.exp(
            evaluate(model, data, 35, hidden)
        )
    return scores


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5%% of the text")
    parser.add_argument("--epochs", type=int, default=None, help="default 8 (quick 1)")
    parser.add_argument("--slice", type=float, default=20.0, help="seconds per turn")
    parser.add_argument("--awd", action="store_true", help="the AWD-LSTM recipe as a third arm")
    parser.add_argument("--source", type=Path, default=SOURCE, help="tiny shakespeare")
    parser.add_argument("--work", type=Path, default=None, help="corpus and runs (a temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS / "lm_recipe_cpu.json")
    parser.add_argument("--plain-arm", type=Path, help=argparse.SUPPRESS)  # a child's corpus
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (1 if args.quick else 8)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plain_arm is not None:
        paths = {name: args.plain_arm / f"{name}.txt" for name in SPLITS}
        print(json.dumps(plain_arm(RECIPE, paths, args.epochs)))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="lm_recipe_"))
    paths = build_corpus(args.source, work / "corpus", 0.05 if args.quick else 1.0)
    vocabulary = Vocabulary.build(read_text(paths["train"]), "word")
    tokens = {name: len(vocabulary.encode(read_text(path))) for name, path in paths.items()}
    print(f"corpus: {tokens} tokens, vocabulary {len(vocabulary)}; work in {work}")
    plain = [sys.executable, __file__, "--plain-arm", str(work / "corpus")]
    commands = {
        "tbptt": tbptt_command(RECIPE, paths, work / "tbptt", args),
        "plain": [*plain, "--epochs", str(args.epochs)],
    }
    if args.awd:
        commands["awd"] = tbptt_command(AWD_RECIPE, paths, work / "awd", args, AWD_SIZE)
    load_before = load_average()
    arms = take_turns(commands, args.slice, work)
    arms["plain"].update(json.loads((work / "plain.out").read_text().splitlines()[-1]))
    for name in ("tbptt", "awd") if args.awd else ("tbptt",):
        arms[name].update(tbptt_scores(work / name))
    for arm in arms.values():
        for split in ("validation", "test"):
            arm[f"{split}_perplexity"] = math.exp(arm[f"{split}_loss"])
            arm.setdefault(f"{split}_perplexity_examples_evaluate", arm[f"{split}_perplexity"])
    for name in ("tbptt", "awd") if args.awd else ("tbptt",):
        arms[name].update(examples_scores(work / name, paths))
    baseline = unigram_perplexity(paths)
    ratios = {
        key: arms["tbptt"][key] / arms["plain"][key]
        for key in ("validation_perplexity", "test_perplexity", "cpu_seconds", "peak_resident_mb")
    }
    print(f"{'arm':>7} {'valid ppl':>10} {'test ppl':>9} {'(examples eval)':>16} ", end="")
    print(f"{'CPU s':>8} {'peak MB':>8}")
    for name, arm in arms.items():
        print(
            f"{name:>7} {arm['validation_perplexity']:10.2f} {arm['test_perplexity']:9.2f} "
            f"{arm['validation_perplexity_examples_evaluate']:7.2f} "
            f"{arm['test_perplexity_examples_evaluate']:8.2f} "
            f"{arm['cpu_seconds']:8.1f} {arm['peak_resident_mb']:8.1f}"
        )
    print(f"unigram {'':>10} {baseline:9.2f}")
    print("tbptt / plain: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    payload = {"benchmark": "lm_recipe", "machine": machine(torch.device("cpu"))}
    payload.update(
        settings={
            "epochs": args.epochs,
            "quick": args.quick,
            "slice_seconds": args.slice,
            "threads": 1,
            "min_count": MIN_COUNT,
            "splits": SPLITS,
            "eval_batch_plain": EVAL_BATCH,
            "recipe": str(RECIPE.relative_to(ROOT)),
        },
        corpus={"tokens": tokens, "vocabulary": len(vocabulary)},
        load_average={"before": load_before, "after": load_average()},
        arms=arms,
        unigram_test_perplexity=baseline,
        ratios_tbptt_over_plain=ratios,
        commands={name: " ".join(command) for name, command in commands.items()},
    )
    print(f"wrote {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
