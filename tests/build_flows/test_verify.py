"""The per-step comparison rules of build_flows.verify, on hand-made outputs (no FINN needed)."""

from __future__ import annotations

import numpy as np
import pytest

from build_flows import verify

REF = np.array([[0.5, -1.25, 2.0, 2.0], [3.0, 0.0, -2.0, 1.0], [-1.0, 4.5, 0.25, 0.0]],
               dtype=np.float32)
INPUTS = verify.Inputs(np.arange(3, dtype=np.uint8).reshape(3, 1, 1, 1), None, "hand-made")


def fake(monkeypatch, outputs) -> None:
    """Make the graph runner return outputs[i] for input image i (its pixel value)."""
    monkeypatch.setattr(verify, "runner",
                        lambda model: lambda x: outputs[int(round(float(x.ravel()[0])))])


def test_equal_logits_pass_and_rounding_is_tolerated(monkeypatch) -> None:
    noisy = REF.copy()
    noisy[1, 0] = np.nextafter(noisy[1, 0], np.float32(10))  # one ulp
    fake(monkeypatch, [(noisy[i], None) for i in range(3)])
    res = verify.verify_step("s", None, INPUTS, REF, uint8_input=True)
    assert res.mismatches == 0 and 0 < res.max_error < 1e-6


def test_changed_logit_names_sample_and_index(monkeypatch) -> None:
    bad = REF.copy()
    bad[2, 3] += 0.01
    fake(monkeypatch, [(bad[i], None) for i in range(3)])
    with pytest.raises(verify.VerificationError,
                       match=r"step s: sample 2: output differs from the reference at index 3"):
        verify.verify_step("s", None, INPUTS, REF, uint8_input=True)


def test_top1_needs_a_positive_affine_map_and_the_class(monkeypatch) -> None:
    top = 3 * REF.astype(np.float64) + 7
    classes = [np.array([3]), np.array([0]), np.array([1])]  # sample 0: a tie, either is right
    fake(monkeypatch, [(classes[i], top[i]) for i in range(3)])
    res = verify.verify_step("s", None, INPUTS, REF, uint8_input=True)
    assert res.kind == "top-1 input = 3 * logits + 7" and res.mismatches == 0

    fake(monkeypatch, [(classes[i], -top[i]) for i in range(3)])  # order reversed
    with pytest.raises(verify.VerificationError, match="not a positive affine map"):
        verify.verify_step("s", None, INPUTS, REF, uint8_input=True)

    skewed = top.copy()
    skewed[1, 2] += 1  # one accumulator step off
    fake(monkeypatch, [(classes[i], skewed[i]) for i in range(3)])
    with pytest.raises(verify.VerificationError, match=r"sample 1: the top-1 input is not"):
        verify.verify_step("s", None, INPUTS, REF, uint8_input=True)

    wrong = [np.array([2]), np.array([0]), np.array([2])]
    fake(monkeypatch, [(wrong[i], top[i]) for i in range(3)])
    with pytest.raises(verify.VerificationError, match=r"sample 2: class 2, reference 1"):
        verify.verify_step("s", None, INPUTS, REF, uint8_input=True)
