"""The NumPy engine's CTC loss against torch.nn.functional.ctc_loss (float64) and finite
differences: repeated labels, blank-only (empty) targets, padded and concatenated targets,
targets no alignment fits."""

import numpy as np
import pytest
import torch

from lstmlab.numpy import ctc_loss


def _torch_ctc(logits, targets, il, tl, **kw):
    x = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.ctc_loss(x.log_softmax(2), torch.tensor(targets), torch.tensor(il),
                                        torch.tensor(tl), **kw)
    if torch.isfinite(loss):
        loss.backward()
    return loss.item(), (x.grad.numpy() if x.grad is not None else None)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("seed", range(4))
def test_ctc_equals_torch_with_repeats_and_empty_targets(seed, reduction):
    rng = np.random.default_rng(seed)
    T, B, C = 14, 5, 6
    logits = rng.normal(size=(T, B, C)) * 2
    il = rng.integers(8, T + 1, B)
    il[0] = T
    tl = rng.integers(1, 5, B)
    tl[1] = 0                                                    # blank only
    targets = rng.integers(1, C, (B, 5))
    targets[2, :4] = 3                                           # a label repeated: needs blanks between
    targets[3, :4] = [1, 1, 2, 2]
    ours, grad = ctc_loss(logits, targets, il, tl, reduction=reduction)
    theirs, tgrad = _torch_ctc(logits, targets, il, tl, reduction=reduction)
    assert abs(ours - theirs) <= 1e-6 * max(1.0, abs(theirs))
    np.testing.assert_allclose(grad, tgrad, rtol=0, atol=1e-6)
    assert np.all(grad[T:] == 0) and np.all(grad[il[4]:, 4] == 0)  # nothing past a sequence's frames


def test_ctc_concatenated_targets_equal_padded_ones():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(9, 3, 4))
    padded = np.array([[1, 2, 0], [3, 3, 3], [2, 0, 0]])
    tl = np.array([2, 3, 1])
    flat = np.concatenate([padded[b, :tl[b]] for b in range(3)])
    a, ga = ctc_loss(logits, padded, [9, 9, 7], tl)
    b, gb = ctc_loss(logits, flat, [9, 9, 7], tl)
    assert a == b and np.array_equal(ga, gb)
    theirs, tgrad = _torch_ctc(logits, flat, [9, 9, 7], tl)
    assert abs(a - theirs) < 1e-9
    np.testing.assert_allclose(ga, tgrad, atol=1e-9)


def test_ctc_gradient_equals_finite_differences():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(7, 2, 4))
    targets, il, tl = np.array([[1, 1, 2], [3, 0, 0]]), np.array([7, 5]), np.array([3, 1])
    _, grad = ctc_loss(logits, targets, il, tl)
    eps, num = 1e-6, np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[idx] += eps
        down[idx] -= eps
        num[idx] = (ctc_loss(up, targets, il, tl)[0] - ctc_loss(down, targets, il, tl)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, num, atol=1e-8)


def test_ctc_a_target_too_long_for_its_frames():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 2, 4))
    targets, il, tl = np.array([[1, 1, 1], [1, 2, 3]]), np.array([4, 4]), np.array([3, 3])
    loss, _ = ctc_loss(logits, targets, il, tl)                  # 1 _ 1 _ 1 needs 5 frames
    assert loss == np.inf and _torch_ctc(logits, targets, il, tl)[0] == np.inf
    loss, grad = ctc_loss(logits, targets, il, tl, zero_infinity=True)
    theirs, tgrad = _torch_ctc(logits, targets, il, tl, zero_infinity=True)
    assert np.isfinite(loss) and abs(loss - theirs) < 1e-9
    assert np.all(grad[:, 0] == 0)
    np.testing.assert_allclose(grad, tgrad, atol=1e-9)


def test_ctc_float32_keeps_its_dtype():
    logits = np.random.default_rng(0).normal(size=(6, 2, 3)).astype(np.float32)
    loss, grad = ctc_loss(logits, np.array([[1, 2], [2, 0]]), [6, 6], [2, 1])
    assert grad.dtype == np.float32 and np.isfinite(loss)


@pytest.mark.parametrize("kwargs, message", [
    ({"targets": np.array([[0, 1]])}, "other than the blank"),
    ({"targets": np.array([[1, 5]])}, "class ids in 0..3"),
    ({"input_lengths": [7]}, "input lengths must lie in 1..6"),
    ({"target_lengths": [2, 1]}, "one entry per sequence"),
    ({"targets": np.array([[1.0, 2.0]])}, "integer class ids"),
    ({"reduction": "none"}, "reduction"),
])
def test_ctc_bad_arguments_say_what_is_wrong(kwargs, message):
    args = {"logits": np.zeros((6, 1, 4)), "targets": np.array([[1, 2]]), "input_lengths": [6],
            "target_lengths": [2]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ctc_loss(**args)
