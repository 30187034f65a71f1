"""Linear, Embedding, the losses, the optimizers and clipping, each against PyTorch."""

import numpy as np
import pytest
import torch

import lstmlab
from lstmlab.numpy import (
    SGD,
    Adam,
    Embedding,
    Linear,
    RMSprop,
    clip_grad_norm,
    gaussian_nll_loss,
    mse_loss,
    softmax_cross_entropy,
)
from tests.conftest import assert_close


def test_linear_forward_backward_equals_torch():
    tl = torch.nn.Linear(5, 3).double()
    ours = Linear(5, 3, dtype=np.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    x = torch.randn(4, 2, 5, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(4, 2, 3, dtype=torch.float64)
    tl(x).backward(dy)
    y, cache = ours.forward(x.detach().numpy())
    grads, dx = ours.backward(cache, dy.numpy())
    assert_close(y, tl(x).detach().numpy(), 1e-12, "y")
    assert_close(dx, x.grad.numpy(), 1e-12, "dx")
    for k, p in tl.named_parameters():
        assert_close(grads[k], p.grad.numpy(), 1e-12, k)


def test_embedding_gradient_accumulates_repeated_ids_and_skips_padding():
    te = torch.nn.Embedding(6, 3, padding_idx=0).double()
    ours = Embedding(6, 3, padding_idx=0, dtype=np.float64)
    ours.load_state_dict({"weight": te.weight.detach().numpy()})
    ids = torch.tensor([[1, 2, 1], [0, 5, 1]])
    dy = torch.randn(2, 3, 3, dtype=torch.float64)
    te(ids).backward(dy)
    y, cache = ours.forward(ids.numpy())
    grads, _ = ours.backward(cache, dy.numpy())
    assert_close(y, te(ids).detach().numpy(), 1e-12, "y")
    assert_close(grads["weight"], te.weight.grad.numpy(), 1e-12, "dW")
    with pytest.raises(ValueError, match="ids must lie in 0..5"):
        ours(np.array([6]))


def test_mse_loss_with_mask_equals_torch():
    p = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 3, dtype=torch.float64)
    mask = torch.tensor([[1.0], [1.0], [0.0], [1.0]], dtype=torch.float64).expand(4, 3)
    ref = (((p - t) * mask) ** 2).sum() / mask.sum()
    ref.backward()
    loss, dp = mse_loss(p.detach().numpy(), t.numpy(), mask.numpy()[:, :1])
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert_close(dp, p.grad.numpy(), 1e-12, "dpred")


def test_gaussian_nll_equals_torch():
    out = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)   # 3 means, 3 log-variances
    t = torch.randn(5, 3, dtype=torch.float64)
    mu, logvar = out[:, :3], out[:, 3:]
    ref = torch.nn.GaussianNLLLoss(eps=1e-300)(mu, t, logvar.exp())
    ref.backward()
    loss, dout = gaussian_nll_loss(out.detach().numpy(), t.numpy())
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert_close(dout, out.grad.numpy(), 1e-12, "dout")
    with pytest.raises(ValueError, match=r"needs \(5, 6\) \(means, then log-variances\)"):
        gaussian_nll_loss(out.detach().numpy()[:, :4], t.numpy())


def test_masked_cross_entropy_equals_torch():
    logits = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 5, (3, 4))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    tt = targets.masked_fill(mask == 0, -100)                 # torch's ignore_index
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), tt.reshape(-1), ignore_index=-100)
    ref.backward()
    loss, dlogits = softmax_cross_entropy(logits.detach().numpy(), targets.numpy(), mask.numpy())
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert_close(dlogits, logits.grad.numpy(), 1e-12, "dlogits")


def test_cross_entropy_is_stable_for_huge_logits():
    loss, grad = softmax_cross_entropy(np.array([[1000.0, -1000.0]]), np.array([1]))
    assert loss == pytest.approx(2000.0) and np.isfinite(grad).all()


OPTIMIZERS = [
    (SGD, torch.optim.SGD, dict(lr=0.1)),
    (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (Adam, torch.optim.Adam, dict(lr=0.01)),
    (Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    (RMSprop, torch.optim.RMSprop, dict(lr=0.01)),
    (RMSprop, torch.optim.RMSprop, dict(lr=0.01, momentum=0.5, weight_decay=0.01)),
]


@pytest.mark.parametrize("ours_cls,torch_cls,kw", OPTIMIZERS,
                         ids=[f"{o.__name__}-{i}" for i, (o, _, _) in enumerate(OPTIMIZERS)])
def test_optimizer_matches_torch_over_several_steps(ours_cls, torch_cls, kw):
    rng = np.random.default_rng(0)
    start = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    params = {k: v.copy() for k, v in start.items()}
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    opt, topt = ours_cls(params, **kw), torch_cls(list(tparams.values()), **kw)
    for _ in range(5):
        grads = {k: rng.standard_normal(v.shape) for k, v in start.items()}
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k])
        opt.step(grads)
        topt.step()
    for k in start:
        assert_close(params[k], tparams[k].detach().numpy(), 1e-12, k)
        assert not np.allclose(params[k], start[k])


def test_clip_grad_norm_equals_torch():
    rng = np.random.default_rng(1)
    grads = {"a": rng.standard_normal((3, 4)) * 5, "b": rng.standard_normal(7) * 5}
    tp = [torch.zeros(3, 4, dtype=torch.float64), torch.zeros(7, dtype=torch.float64)]
    for p, g in zip(tp, grads.values()):
        p.grad = torch.tensor(g)
    total_ref = torch.nn.utils.clip_grad_norm_(tp, 1.0)
    total = clip_grad_norm(grads, 1.0)
    assert total == pytest.approx(total_ref.item(), rel=1e-12)
    for p, g in zip(tp, grads.values()):
        assert_close(g, p.grad.numpy(), 1e-12)
    assert np.sqrt(sum(np.sum(g * g) for g in grads.values())) == pytest.approx(1.0, rel=1e-5)


def test_pieces_train_a_sequence_model():
    """Embedding -> LSTM -> Linear with Adam learns to recall the first token of a sequence."""
    rng = np.random.default_rng(0)
    emb, lstm = Embedding(4, 8, seed=1), lstmlab.numpy.LSTM(8, 16, seed=2, forget_bias=1.0)
    head = Linear(16, 4, seed=3)
    modules = {"emb": emb, "lstm": lstm, "head": head}
    params = {f"{m}.{k}": v for m, mod in modules.items() for k, v in mod.params.items()}
    opt = Adam(params, lr=0.02)
    losses = []
    for _ in range(150):
        ids = rng.integers(0, 4, size=(6, 32))                 # (T, B)
        e, ce = emb.forward(ids)
        y, _, cl = lstm.forward(e)
        logits, ch = head.forward(y[-1])
        loss, dlogits = softmax_cross_entropy(logits, ids[0])
        gh, dyl = head.backward(ch, dlogits)
        dy = np.zeros_like(y)
        dy[-1] = dyl
        gl, dx, _ = lstm.backward(cl, dy)
        ge, _ = emb.backward(ce, dx)
        grads = {f"{m}.{k}": v for m, g in (("emb", ge), ("lstm", gl), ("head", gh)) for k, v in g.items()}
        clip_grad_norm(grads, 5.0)
        opt.step(grads)
        losses.append(loss)
    assert np.mean(losses[:10]) > 1.2                          # about ln 4 = 1.39 at the start
    assert np.mean(losses[-10:]) < 0.1                         # recalled across 5 steps
