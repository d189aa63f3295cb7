"""The NumPy reference is the oracle for the torch engine; here it is checked itself.

Its hand-written backward pass is compared with central finite differences of a
window loss computed by the small, independent, per-stream loop below, for full BPTT
and for truncated windows, with resets, masks and both losses.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tbptt.reference import (
    TORCH_NAMES,
    ElmanParams,
    element_losses,
    forward,
    gradients,
    window_spans,
)

INPUT_SIZE, HIDDEN_SIZE, OUTPUT_SIZE = 2, 3, 3
EPS = 3e-6  # balances rounding (~1e-16 / EPS) against truncation (~EPS^2)
RTOL, ATOL = 1e-7, 1e-9


# --- an independent oracle: one stream, one step at a time, no backward pass ---------


def _loss_of(y: np.ndarray, target, loss: str) -> float:
    if loss == "mse":
        return float(np.mean((y - target) ** 2))
    return float(np.log(np.sum(np.exp(y))) - y[int(target)])


def _run_stream(p: dict, xs, resets_b, h, start: int, end: int):
    """Yield (i, h_i) for one stream from the state ``h`` entering step ``start``."""
    for i in range(start, end):
        if resets_b is not None and resets_b[i]:
            h = np.zeros_like(h)
        h = np.tanh(p["W_ih"] @ xs[i] + p["b_ih"] + p["W_hh"] @ h + p["b_hh"])
        yield i, h


def _state_entering(p: dict, case: dict, b: int, step: int) -> np.ndarray:
    """The forward-pass state of stream b entering ``step``, before that step's reset."""
    h = np.zeros(HIDDEN_SIZE) if case["h0"] is None else case["h0"][b]
    resets_b = None if case["resets"] is None else case["resets"][:, b]
    for _, h_i in _run_stream(p, case["inputs"][:, b], resets_b, h, 0, step):
        h = h_i
    return h


def window_loss(p: dict, case: dict, span, base: dict) -> float:
    """L_n with parameters ``p``, from the state at step s_n under ``base`` parameters."""
    start, loss_start, end = span
    total, count = 0.0, 0.0
    for b in range(case["inputs"].shape[1]):
        h = _state_entering(base, case, b, start)  # a constant: base parameters
        resets_b = None if case["resets"] is None else case["resets"][:, b]
        for i, h_i in _run_stream(p, case["inputs"][:, b], resets_b, h, start, end):
            if i >= loss_start and (case["mask"] is None or case["mask"][i, b]):
                y = p["W_out"] @ h_i + p["b_out"]
                total += _loss_of(y, case["targets"][i, b], case["loss"])
                count += 1
    return total / count if count else 0.0


def finite_difference(case: dict, span, base: dict | None = None) -> dict[str, np.ndarray]:
    """Central differences of ``window_loss`` in every parameter entry."""
    p0 = case["params"].as_dict()
    base = p0 if base is None else base
    grads = {}
    for name, value in p0.items():
        grads[name] = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in p0.items()}
            minus = {k: v.copy() for k, v in p0.items()}
            plus[name][index] += EPS
            minus[name][index] -= EPS
            difference = window_loss(plus, case, span, base) - window_loss(minus, case, span, base)
            grads[name][index] = difference / (2 * EPS)
    return grads


def make_case(seed: int, T: int, B: int, loss: str = "mse", resets=True, mask=True, h0=True):
    rng = np.random.default_rng(seed)
    params = ElmanParams.random(INPUT_SIZE, HIDDEN_SIZE, OUTPUT_SIZE, rng, scale=0.7)
    if loss == "mse":
        targets = rng.standard_normal((T, B, OUTPUT_SIZE))
    else:
        targets = rng.integers(0, OUTPUT_SIZE, size=(T, B))
    return {
        "params": params,
        "inputs": rng.standard_normal((T, B, INPUT_SIZE)),
        "targets": targets,
        "h0": rng.standard_normal((B, HIDDEN_SIZE)) if h0 else None,
        "resets": rng.random((T, B)) < 0.2 if resets else None,
        "mask": rng.random((T, B)) < 0.8 if mask else None,
        "loss": loss,
    }


def reference_gradients(case: dict, k1, k2=None):
    return gradients(
        case["params"],
        case["inputs"],
        case["targets"],
        k1,
        k2,
        h0=case["h0"],
        resets=case["resets"],
        mask=case["mask"],
        loss=case["loss"],
    )


def assert_grads_close(actual: dict, expected: dict, rtol=RTOL, atol=ATOL) -> None:
    assert set(actual) == set(TORCH_NAMES)
    for name in TORCH_NAMES:
        np.testing.assert_allclose(actual[name], expected[name], rtol=rtol, atol=atol, err_msg=name)


# --- windows --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "T, k1, k2, expected",
    [
        (10, 3, 5, [(0, 0, 3), (1, 3, 6), (4, 6, 9), (7, 9, 10)]),
        (10, 3, 3, [(0, 0, 3), (3, 3, 6), (6, 6, 9), (9, 9, 10)]),
        (6, 2, None, [(0, 0, 2), (2, 2, 4), (4, 4, 6)]),
        (7, 1, 3, [(0, 0, 1), (0, 1, 2), (0, 2, 3), (1, 3, 4), (2, 4, 5), (3, 5, 6), (4, 6, 7)]),
        (4, 10, 12, [(0, 0, 4)]),
        (0, 2, 2, []),
    ],
)
def test_window_spans_hand_worked(T, k1, k2, expected):
    assert window_spans(T, k1, k2) == expected


@pytest.mark.parametrize("T", range(1, 14))
def test_every_loss_step_belongs_to_exactly_one_window(T):
    for k1 in range(1, T + 2):
        for k2 in range(k1, T + 4):
            spans = window_spans(T, k1, k2)
            loss_steps = [i for _, t_prev, t_n in spans for i in range(t_prev, t_n)]
            assert loss_steps == list(range(T))
            for start, t_prev, t_n in spans:
                assert t_prev - start == min(k2 - k1, t_prev)  # history: k2 - k1 steps
                assert 0 < t_n - t_prev <= k1 and t_n - start <= k2


@pytest.mark.parametrize(
    "k1, k2, message",
    [(4, 3, "k1 is the stride"), (0, 3, "k1 must be >= 1"), (0, None, "k1 must be >= 1")],
)
def test_invalid_truncation_is_refused(k1, k2, message):
    with pytest.raises(ValueError, match=message):
        window_spans(10, k1, k2)
    case = make_case(0, T=5, B=1)
    with pytest.raises(ValueError, match=message):
        reference_gradients(case, k1, k2)


def test_k2_without_k1_is_refused():
    with pytest.raises(ValueError, match="k2=3 given without k1"):
        reference_gradients(make_case(0, T=5, B=1), None, 3)


# --- forward pass and losses -----------------------------------------------------------


def test_forward_shapes_and_first_step():
    case = make_case(1, T=4, B=2, resets=False)
    p = case["params"]
    hidden, outputs = forward(p, case["inputs"], h0=case["h0"])
    assert hidden.shape == (4, 2, HIDDEN_SIZE) and outputs.shape == (4, 2, OUTPUT_SIZE)
    a0 = case["inputs"][0] @ p.W_ih.T + p.b_ih + case["h0"] @ p.W_hh.T + p.b_hh
    np.testing.assert_allclose(hidden[0], np.tanh(a0))
    np.testing.assert_allclose(outputs, hidden @ p.W_out.T + p.b_out)


def test_reset_restarts_from_zeros_not_h0():
    case = make_case(2, T=6, B=2, resets=False)
    p, inputs = case["params"], case["inputs"]
    resets = np.zeros((6, 2), dtype=bool)
    resets[0, 0] = resets[3, 1] = True
    hidden, _ = forward(p, inputs, h0=case["h0"], resets=resets)
    np.testing.assert_allclose(hidden[:, 0], forward(p, inputs[:, :1])[0][:, 0])
    np.testing.assert_allclose(hidden[3:, 1], forward(p, inputs[3:, 1:])[0][:, 0])
    before_reset, _ = forward(p, inputs[:3, 1:], h0=case["h0"][1:])
    np.testing.assert_allclose(hidden[:3, 1], before_reset[:, 0])


def test_element_losses():
    rng = np.random.default_rng(3)
    outputs = rng.standard_normal((3, 2, 4))
    targets = rng.standard_normal((3, 2, 4))
    np.testing.assert_allclose(
        element_losses(outputs, targets, "mse"), ((outputs - targets) ** 2).mean(-1)
    )
    classes = rng.integers(0, 4, size=(3, 2))
    expected = [[_loss_of(outputs[i, b], classes[i, b], "ce") for b in range(2)] for i in range(3)]
    np.testing.assert_allclose(element_losses(outputs, classes, "cross_entropy"), expected)
    with pytest.raises(ValueError, match="unknown loss"):
        element_losses(outputs, targets, "hinge")


def test_from_named_uses_torch_names():
    params = ElmanParams.random(2, 3, 4, np.random.default_rng(4))
    named = {TORCH_NAMES[name]: value.tolist() for name, value in params.as_dict().items()}
    rebuilt = ElmanParams.from_named(named)
    for name, value in params.as_dict().items():
        assert rebuilt.as_dict()[name].dtype == np.float64
        np.testing.assert_array_equal(rebuilt.as_dict()[name], value)
    with pytest.raises(ValueError, match="head.bias"):
        ElmanParams.from_named({k: v for k, v in named.items() if k != "head.bias"})


# --- gradients against finite differences ---------------------------------------------


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("resets, mask", [(False, False), (True, True)])
def test_full_bptt_matches_finite_differences(loss, resets, mask):
    case = make_case(5, T=7, B=3, loss=loss, resets=resets, mask=mask)
    (grads,) = reference_gradients(case, None)
    assert_grads_close(grads, finite_difference(case, (0, 0, 7)))


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("k1, k2", [(2, 5), (1, 3), (3, 3), (2, 2)])
def test_truncated_windows_match_finite_differences(loss, k1, k2):
    case = make_case(6, T=9, B=2, loss=loss)
    spans = window_spans(9, k1, k2)
    windows = reference_gradients(case, k1, k2)
    assert len(windows) == len(spans)
    for grads, span in zip(windows, spans, strict=True):
        assert_grads_close(grads, finite_difference(case, span))


def test_truncation_cuts_the_gradient_at_s_n():
    """Window 3 of TBPTT(2, 3) starts at s_3 = 3; its history before that is constant."""
    case = make_case(7, T=8, B=2, resets=False, mask=False)
    grads = reference_gradients(case, 2, 3)[2]
    through_everything = finite_difference(case, (0, 4, 6))
    assert not np.allclose(grads["W_hh"], through_everything["W_hh"], rtol=1e-3)
    assert_grads_close(grads, finite_difference(case, (3, 4, 6)))


def test_all_padding_window_gives_zero_gradient():
    case = make_case(8, T=9, B=2, mask=False)
    case["mask"] = np.ones((9, 2), dtype=bool)
    case["mask"][3:6] = False
    windows = reference_gradients(case, 3, 5)
    for name in TORCH_NAMES:
        assert np.all(windows[1][name] == 0.0)
        assert np.all(np.isfinite(windows[0][name])) and np.any(windows[0][name] != 0.0)
        assert np.any(windows[2][name] != 0.0)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_one_window_of_length_T_is_full_bptt(loss):
    case = make_case(9, T=6, B=2, loss=loss)
    (full,) = reference_gradients(case, None)
    for k1, k2 in [(6, 6), (6, 9), (10, 10)]:
        (window,) = reference_gradients(case, k1, k2)
        assert_grads_close(window, full, rtol=1e-12, atol=1e-14)


def test_full_bptt_matches_torch_autograd():
    torch = pytest.importorskip("torch")

    class Elman(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.RNN(INPUT_SIZE, HIDDEN_SIZE)
            self.head = torch.nn.Linear(HIDDEN_SIZE, OUTPUT_SIZE)

    torch.manual_seed(0)
    model = Elman().double()
    case = make_case(10, T=5, B=2, resets=False, mask=False)
    case["params"] = ElmanParams.from_named(
        {k: v.detach().numpy() for k, v in model.named_parameters()}
    )
    out, _ = model.rnn(torch.from_numpy(case["inputs"]), torch.from_numpy(case["h0"])[None])
    outputs = model.head(out)
    ((outputs - torch.from_numpy(case["targets"])) ** 2).mean().backward()
    np.testing.assert_allclose(
        forward(case["params"], case["inputs"], h0=case["h0"])[1], outputs.detach().numpy()
    )
    (grads,) = reference_gradients(case, None)
    named = dict(model.named_parameters())
    expected = {name: named[torch_name].grad.numpy() for name, torch_name in TORCH_NAMES.items()}
    assert_grads_close(grads, expected, rtol=1e-10, atol=1e-12)


@st.composite
def cases(draw):
    T = draw(st.integers(1, 12))
    B = draw(st.integers(1, 3))
    k1 = draw(st.integers(1, T + 1))
    k2 = draw(st.integers(k1, T + 3))
    loss = draw(st.sampled_from(["mse", "cross_entropy"]))
    case = make_case(draw(st.integers(0, 2**32 - 1)), T, B, loss, h0=draw(st.booleans()))
    case["resets"] = draw(hnp.arrays(np.bool_, (T, B)))
    case["mask"] = draw(hnp.arrays(np.bool_, (T, B)))
    return case, k1, k2


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(cases())
def test_any_truncation_matches_finite_differences(drawn):
    case, k1, k2 = drawn
    T = case["inputs"].shape[0]
    for grads, span in zip(reference_gradients(case, k1, k2), window_spans(T, k1, k2), strict=True):
        assert_grads_close(grads, finite_difference(case, span))
