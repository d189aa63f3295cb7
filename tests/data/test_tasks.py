"""The long-dependency tasks: each holds its defining invariant, is reproducible from its
seed, and its metric scores perfect outputs perfectly and constant outputs at chance."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
import torch
import torch.nn.functional as F

import tbptt
from tbptt import TBPTTError
from tbptt.data import tasks

SMALL = {
    "adding": lambda seed: tasks.adding(4, 12, seed=seed),
    "copy": lambda seed: tasks.copy_memory(4, 5, seed=seed),
    "recall": lambda seed: tasks.delayed_recall(4, 3, seed=seed),
    "temporal_order": lambda seed: tasks.temporal_order(4, 30, seed=seed),
    "embedded_reber": lambda seed: tasks.embedded_reber(4, seed=seed),
    "mackey_glass": lambda seed: tasks.mackey_glass(30, seed=seed),
}


def test_every_task_is_registered_with_a_metric():
    assert set(tasks.TASKS) == set(tasks.METRICS) == set(SMALL)


@pytest.mark.parametrize(
    ("name", "inputs", "targets", "num_classes", "input_size"),
    [
        ("adding", ((12, 4, 2), torch.float32), ((12, 4, 1), torch.float32), None, 2),
        ("copy", ((26, 4), torch.int64), ((26, 4), torch.int64), 10, 10),
        ("recall", ((30, 4), torch.int64), ((30, 4), torch.int64), 4, 4),
        ("temporal_order", ((30, 4), torch.int64), ((30, 4), torch.int64), 4, 8),
        ("mackey_glass", ((30, 1, 1), torch.float32), ((30, 1, 1), torch.float32), None, 1),
    ],
)
def test_shapes_and_dtypes(name, inputs, targets, num_classes, input_size):
    data = SMALL[name](0)
    assert (tuple(data.inputs.shape), data.inputs.dtype) == inputs
    assert (tuple(data.targets.shape), data.targets.dtype) == targets
    assert data.mask.dtype == torch.bool and data.mask.shape == data.inputs.shape[:2]
    assert (data.num_classes, data.input_size) == (num_classes, input_size)


def test_reber_shapes_follow_the_longest_string():
    data = tasks.embedded_reber(4, seed=0)
    steps = int(data.mask.sum(0).max())
    assert data.inputs.shape == (steps, 4) and data.inputs.dtype == torch.int64
    assert data.targets.shape == (steps, 4, 7) and data.targets.dtype == torch.float32
    assert (data.num_classes, data.input_size) == (7, 7)


@pytest.mark.parametrize("name", SMALL)
def test_same_seed_same_data_different_seed_different_data(name):
    first, again, other = SMALL[name](1), SMALL[name](1), SMALL[name](2)
    for field in ("inputs", "targets", "mask"):
        assert torch.equal(getattr(first, field), getattr(again, field))
    differs = (
        not torch.equal(first.inputs, other.inputs) or first.inputs.shape != other.inputs.shape
    )
    assert differs


@pytest.mark.parametrize("name", SMALL)
def test_data_fit_the_built_in_models_and_the_metric(name):
    torch.manual_seed(0)
    data = SMALL[name](0)
    tokens = data.inputs.dtype == torch.int64
    outputs_size = data.num_classes or data.targets.shape[-1]
    size = {"vocab_size" if tokens else "input_size": data.input_size}
    model = tbptt.models.LSTM(8, output_size=outputs_size, **size)
    with torch.no_grad():
        outputs, _ = model(data.inputs)
    if data.targets.dtype == torch.int64:
        assert tbptt.losses.cross_entropy(outputs, data.targets).shape == data.mask.shape
    else:
        assert tbptt.losses.mse(outputs, data.targets).shape == data.mask.shape
    assert 0.0 <= tasks.METRICS[name](outputs, data) < float("inf")


# Adding problem.


def test_adding_marks_one_step_in_each_half_and_targets_their_sum_at_the_end():
    length = 21
    data = tasks.adding(64, length, seed=3)
    values, markers = data.inputs[..., 0], data.inputs[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(markers.unique().tolist()) <= {0.0, 1.0}
    assert (markers[: length // 2].sum(0) == 1).all() and (markers[length // 2 :].sum(0) == 1).all()
    assert torch.equal(data.targets[-1, :, 0], (values * markers).sum(0))
    assert (data.targets[:-1] == 0).all()
    assert data.mask[-1].all() and not data.mask[:-1].any()


def test_adding_metrics_perfect_and_the_predict_one_baseline():
    data = tasks.adding(4000, 10, seed=0)
    assert tasks.adding_mse(data.targets, data) == 0.0
    assert tasks.adding_solved(data.targets, data)
    ones = torch.ones_like(data.targets)
    assert tasks.adding_mse(ones, data) == pytest.approx(1 / 6, abs=0.015)
    assert not tasks.adding_solved(ones, data)
    assert not tasks.adding_solved(data.targets + 0.05, data)
    assert tasks.adding_solved(data.targets + 0.05, data, tolerance=0.08)


# Copying memory problem.


@pytest.mark.parametrize("delay", [0, 1, 7])
def test_copy_reproduces_the_symbols_after_the_delay_and_the_go_marker(delay):
    symbols, copy_length = 5, 4
    data = tasks.copy_memory(16, delay, symbols=symbols, copy_length=copy_length, seed=0)
    go = symbols + 1
    payload = data.inputs[:copy_length]
    assert data.inputs.shape[0] == copy_length + delay + 1 + copy_length
    assert ((payload >= 1) & (payload <= symbols)).all()
    assert (data.inputs[copy_length : copy_length + delay] == tasks.BLANK).all()
    assert (data.inputs[copy_length + delay] == go).all()
    assert (data.inputs[copy_length + delay + 1 :] == tasks.BLANK).all()
    assert torch.equal(data.targets[-copy_length:], payload)
    assert (data.targets[:-copy_length] == tasks.BLANK).all()
    assert data.mask.all()
    assert data.num_classes == symbols + 2


def test_copy_accuracy_perfect_and_chance_over_the_copied_symbols():
    data = tasks.copy_memory(1000, 3, seed=0)
    perfect = F.one_hot(data.targets, data.num_classes).float()
    assert tasks.copy_memory_accuracy(perfect, data) == 1.0
    always_one = torch.zeros(*data.targets.shape, data.num_classes)
    always_one[..., 1] = 1.0
    assert tasks.copy_memory_accuracy(always_one, data) == pytest.approx(1 / 8, abs=0.02)


# Delayed recall.


@pytest.mark.parametrize(("delay", "steps"), [(1, 2), (3, None), (7, 40)])
def test_recall_targets_the_input_delay_steps_back_where_there_is_one(delay, steps):
    data = tasks.delayed_recall(16, delay, steps=steps, symbols=5, seed=0)
    length = steps or 10 * delay
    assert data.inputs.shape == (length, 16)
    assert ((data.inputs >= 0) & (data.inputs < 5)).all()
    assert torch.equal(data.targets[delay:], data.inputs[:-delay])
    assert not data.mask[:delay].any() and data.mask[delay:].all()


def test_recall_accuracy_perfect_and_chance():
    data = tasks.delayed_recall(500, 4, symbols=4, seed=0)
    perfect = F.one_hot(data.targets, data.num_classes).float()
    assert tasks.delayed_recall_accuracy(perfect, data) == 1.0
    echo_now = F.one_hot(data.inputs, data.num_classes).float()  # no memory: the current input
    assert tasks.delayed_recall_accuracy(echo_now, data) == pytest.approx(1 / 4, abs=0.02)


# Temporal order problem.

ORDER_CLASSES = {("X", "X"): 0, ("X", "Y"): 1, ("Y", "X"): 2, ("Y", "Y"): 3}


def test_temporal_order_class_is_the_order_of_x_and_y_at_the_papers_positions():
    data = tasks.temporal_order(200, 100, seed=0)
    for column in range(200):
        text = "".join(tasks.TEMPORAL_ORDER_TOKENS[i] for i in data.inputs[:, column])
        assert text[0] == "E" and text[-1] == "B" and set(text[1:-1]) <= set("abcdXY")
        (t1, first), (t2, second) = [(m.start(), m.group()) for m in re.finditer("[XY]", text)]
        assert 10 <= t1 <= 20 and 50 <= t2 <= 60
        assert data.targets[-1, column] == ORDER_CLASSES[first, second]
    assert (data.targets[:-1] == 0).all()
    assert data.mask[-1].all() and not data.mask[:-1].any()


def test_temporal_order_metrics_perfect_chance_and_the_papers_0_3_criterion():
    data = tasks.temporal_order(2000, 10, seed=0)
    confident = 10 * F.one_hot(data.targets, 4).float()
    assert tasks.temporal_order_accuracy(confident, data) == 1.0
    assert tasks.temporal_order_solved(confident, data)
    mixed = confident.clone()
    mixed[:, :7] /= 10  # the first 7 sequences right by the largest output only
    assert tasks.temporal_order_correct(mixed, data).tolist() == [False] * 7 + [True] * 1993
    unsure = confident / 10  # right class, but probability 0.475 misses it by > 0.3
    assert tasks.temporal_order_accuracy(unsure, data) == 1.0
    assert not tasks.temporal_order_solved(unsure, data)
    constant = torch.zeros(*data.targets.shape, 4)
    constant[..., 2] = 1.0
    assert tasks.temporal_order_accuracy(constant, data) == pytest.approx(0.25, abs=0.04)
    assert not tasks.temporal_order_solved(constant, data)


# Embedded Reber grammar, checked by a regular expression written from the graph.

_FROM_NODE_3 = "T*V(?:PXT*V)*(?:V|PS)"
REBER = f"B(?:TS*X(?:S|X{_FROM_NODE_3})|P{_FROM_NODE_3})E"
EMBEDDED_REBER = re.compile(rf"B([TP]){REBER}\1E")


def test_the_checker_agrees_with_published_examples():
    for good in ["BTSSXXTVVE", "BPVVE", "BTXXVPSE", "BPVPXVPXVPXVVE", "BTSXXVPSE"]:
        assert re.fullmatch(REBER, good)
    for bad in ["BTSSPXSE", "BPTVVB", "BTXXVVSE", "BPVSPSE", "BTSSSE"]:
        assert not re.fullmatch(REBER, bad)
    assert EMBEDDED_REBER.fullmatch("BTBPVVETE") and not EMBEDDED_REBER.fullmatch("BTBPVVEPE")


def reber_strings(data):
    pairs = zip(data.inputs.T.tolist(), data.mask.sum(0).tolist(), strict=True)
    return ["".join(tasks.REBER_SYMBOLS[i] for i in column[:length]) for column, length in pairs]


def test_every_reber_string_is_in_the_grammar_and_the_mask_covers_it_exactly():
    data = tasks.embedded_reber(500, seed=0)
    strings = reber_strings(data)
    for column, string in enumerate(strings):
        assert EMBEDDED_REBER.fullmatch(string)
        assert data.mask[: len(string), column].all() and not data.mask[len(string) :, column].any()
        assert (data.targets[len(string) - 1 :, column] == 0).all()  # nothing follows E
        penultimate = data.targets[len(string) - 3, column]
        assert penultimate.nonzero().flatten().tolist() == [tasks.REBER_SYMBOLS.index(string[1])]
    assert max(map(len, strings)) == data.inputs.shape[0] and min(map(len, strings)) >= 9


def test_reber_targets_are_exactly_the_continuations_the_grammar_allows():
    data = tasks.embedded_reber(3000, seed=1)
    allowed, seen, count = {}, defaultdict(set), defaultdict(int)
    for column, string in enumerate(reber_strings(data)):
        for step in range(len(string)):
            prefix = string[: step + 1]
            legal = {tasks.REBER_SYMBOLS[i] for i in data.targets[step, column].nonzero()}
            assert allowed.setdefault(prefix, legal) == legal
            seen[prefix].update(string[step + 1 : step + 2])
            count[prefix] += 1
    for prefix, legal in allowed.items():
        assert seen[prefix] <= legal
        if count[prefix] >= 20:  # a missed 50/50 branch has probability 2 ** -19
            assert seen[prefix] == legal


def test_reber_metrics_perfect_chance_and_the_long_dependency():
    data = tasks.embedded_reber(2000, seed=0)
    assert tasks.reber_accuracy(data.targets, data) == 1.0
    assert tasks.reber_accuracy(data.targets, data, threshold=0.5) == 1.0
    assert tasks.reber_penultimate_accuracy(data.targets, data) == 1.0
    constant = torch.zeros_like(data.targets)
    constant[..., tasks.REBER_SYMBOLS.index("T")] = 1.0
    assert tasks.reber_accuracy(constant, data) == 0.0
    assert tasks.reber_penultimate_accuracy(constant, data) == pytest.approx(0.5, abs=0.05)
    forgetful = data.targets.clone()  # predicts both T and P before the last symbol
    steps = data.mask.sum(0) - 3
    forgetful[steps, torch.arange(2000), 1:3] = 1.0
    assert tasks.reber_accuracy(forgetful, data) == 0.0
    assert tasks.reber_penultimate_accuracy(forgetful, data) == 0.0


# Mackey-Glass series.


def mackey_glass_slope(now, delayed):
    return 0.2 * delayed / (1 + delayed**10) - 0.1 * now


@pytest.mark.parametrize("seed", [0, 1])
def test_mackey_glass_stays_on_the_attractor_and_solves_the_delay_equation(seed):
    x = tasks.mackey_glass(400, seed=seed).inputs.flatten().double()
    assert x.min() > 0.2 and x.max() < 1.4 and x.std() > 0.15
    # x(t+1) - x(t) = integral of the slope, by the trapezoid rule, with x(t - 17):
    change = x[18:] - x[17:-1]
    trapezoid = (mackey_glass_slope(x[17:-1], x[:-18]) + mackey_glass_slope(x[18:], x[1:-17])) / 2
    assert (change - trapezoid).abs().max() < 3e-3


def test_mackey_glass_settles_at_its_fixed_point_for_a_short_delay():
    assert torch.allclose(tasks.mackey_glass(20, tau=2, seed=0).inputs, torch.tensor(1.0))


def test_mackey_glass_targets_are_the_inputs_horizon_steps_later():
    data = tasks.mackey_glass(50, horizon=3, seed=0)
    assert torch.equal(data.inputs[3:], data.targets[:-3])
    assert torch.equal(tasks.mackey_glass(53, seed=0).inputs[3:], data.targets)
    assert data.mask.all()


def test_mackey_glass_nrmse_is_zero_when_perfect_and_one_for_the_mean():
    data = tasks.mackey_glass(200, horizon=5, seed=0)
    assert tasks.mackey_glass_nrmse(data.targets, data) == 0.0
    mean = torch.full_like(data.targets, float(data.targets.mean()))
    assert tasks.mackey_glass_nrmse(mean, data) == pytest.approx(1.0, abs=1e-5)


# Bad input.


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: tasks.adding(0, 10, seed=0), "num_sequences must be an integer >= 1"),
        (lambda: tasks.adding(4, 1, seed=0), "length must be an integer >= 2"),
        (lambda: tasks.adding(4, 10.0, seed=0), "length must be an integer"),
        (lambda: tasks.adding(4, 10, seed=-1), "seed must be an integer >= 0"),
        (lambda: tasks.copy_memory(4, -1, seed=0), "delay must be an integer >= 0"),
        (lambda: tasks.copy_memory(4, 5, symbols=0, seed=0), "symbols must be"),
        (lambda: tasks.copy_memory(4, 5, copy_length=0, seed=0), "copy_length must be"),
        (lambda: tasks.delayed_recall(4, 0, seed=0), "delay must be an integer >= 1"),
        (lambda: tasks.delayed_recall(4, 5, steps=5, seed=0), "steps must be an integer >= 6"),
        (lambda: tasks.delayed_recall(4, 5, symbols=1, seed=0), "symbols must be"),
        (lambda: tasks.temporal_order(4, 9, seed=0), "length must be an integer >= 10"),
        (lambda: tasks.embedded_reber(0, seed=0), "num_sequences must be"),
        (lambda: tasks.mackey_glass(0, seed=0), "length must be"),
        (lambda: tasks.mackey_glass(10, horizon=0, seed=0), "horizon must be"),
        (lambda: tasks.mackey_glass(10, tau=0.05, seed=0), "tau must be a positive multiple"),
        (lambda: tasks.mackey_glass(10, tau=17.05, seed=0), "tau must be a positive multiple"),
    ],
)
def test_bad_arguments_are_refused_with_a_one_line_message(make, message):
    with pytest.raises(TBPTTError, match=re.escape(message)) as error:
        make()
    assert "\n" not in str(error.value)


def test_metrics_refuse_outputs_of_the_wrong_shape_or_task():
    data = tasks.copy_memory(4, 2, seed=0)
    with pytest.raises(TBPTTError, match=re.escape("outputs must have shape (T, N, 10)")):
        tasks.copy_memory_accuracy(torch.zeros(*data.targets.shape, 9), data)
    adding = tasks.adding(4, 10, seed=0)
    with pytest.raises(TBPTTError, match="num_classes is None"):
        tasks.copy_memory_accuracy(torch.zeros(10, 4, 10), adding)


def test_task_data_refuses_a_mask_that_does_not_match_the_inputs():
    with pytest.raises(TBPTTError, match="mask must be a bool tensor of shape"):
        tasks.TaskData(
            torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(3, 1, dtype=torch.bool), 2, 2
        )
