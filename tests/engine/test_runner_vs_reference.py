"""For Elman networks, tbptt.gradients equals the NumPy reference to float64 precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tbptt
from tbptt import losses, models, reference
from tbptt.engine.windows import spans


@settings(max_examples=60)
@given(
    steps=st.integers(1, 16),
    batch=st.integers(1, 4),
    k1=st.integers(1, 8),
    extra=st.integers(0, 8),
    full=st.booleans(),
    reset_p=st.sampled_from([0.0, 0.1, 0.5]),
    mask_p=st.sampled_from([1.0, 0.6, 0.1]),
    loss=st.sampled_from(["mse", "cross_entropy"]),
    with_state=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_elman_gradients_equal_the_numpy_reference(
    steps, batch, k1, extra, full, reset_p, mask_p, loss, with_state, seed
):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    features, hidden, outputs = 3, 5, 4
    model = models.Elman(hidden, input_size=features, output_size=outputs).double()
    inputs = rng.normal(size=(steps, batch, features))
    if loss == "mse":
        targets = rng.normal(size=(steps, batch, outputs))
    else:
        targets = rng.integers(0, outputs, size=(steps, batch))
    resets = rng.random((steps, batch)) < reset_p
    mask = rng.random((steps, batch)) < mask_p
    h0 = rng.normal(size=(batch, hidden)) if with_state else None
    k1, k2 = (None, None) if full else (k1, k1 + extra)

    params = reference.ElmanParams.from_named(
        {name: p.detach().numpy() for name, p in model.named_parameters()}
    )
    expected = reference.gradients(
        params, inputs, targets, k1, k2, h0=h0, resets=resets, mask=mask, loss=loss
    )
    state = None if h0 is None else torch.from_numpy(h0).unsqueeze(1)  # (B, layers=1, H)
    actual = tbptt.gradients(
        model,
        getattr(losses, loss),
        torch.from_numpy(inputs),
        torch.from_numpy(targets),
        k1,
        k2,
        state=state,
        resets=torch.from_numpy(resets),
        mask=torch.from_numpy(mask),
    )
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        for ours, theirs in reference.TORCH_NAMES.items():
            np.testing.assert_allclose(
                got[theirs].numpy(), want[ours], rtol=1e-9, atol=1e-12, err_msg=theirs
            )


def test_reference_and_engine_refuse_the_same_truncations():
    for k1, k2 in [(3, 2), (0, 0)]:
        with pytest.raises(ValueError):
            reference.window_spans(5, k1, k2)
        with pytest.raises(ValueError):
            spans(5, k1, k2)
