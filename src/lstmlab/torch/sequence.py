"""One LSTM layer and direction over a whole sequence as one autograd Function.

PyTorch's fused kernels know only the plain LSTM. Every other variant (peepholes, CIFG,
layer norm, the gateless ablations, other squashing functions) ran through cells.py's step
with autograd recording a graph of a dozen nodes per step, and backward walking it: 4-7x
the fused kernel's time. Here forward runs the steps without a graph and keeps what
backward needs (the gates, c, tanh c, layer norm statistics), and backward is the
recurrence written out, as lstmlab.numpy's cells do it: per step a handful of whole-tensor
operations and one product, then every weight gradient as one product over all steps.
The equations are cells.LSTMCell's (tests hold the two equal in float64, and to autograd).

On the CPU in float32, with the `fast` extra (numba), the time loops run as one compiled call
each (lstmlab.numpy.kernels.variant_loops, the layer norms included): per step a product on
torch's own BLAS (MKL's sgemm, called from the loop) and one pass over the gates, where torch's
product and a dozen torch operations a step took twice the time. At (100, 32, 32, 128)
forward+backward of peephole went from 2.3x nn.LSTM's fused kernel to 1.1-1.3x, cifg from
1.7x to 0.8-1.0x, layernorm from 5.4x to 1.4-1.7x (`lstmlab bench` runs, README). Where
torch's idle threads sleep (as lstmlab's trainings set it up, lstmlab.threads), the loops run
the batch in parts, one per torch thread, each with its own products on one BLAS thread
(kernels.row_parts, kernels.in_parallel): the step's elementwise work no longer waits on one
core, and layernorm went to 1.2x. Other devices and dtypes run the torch operations.

Used by Recurrent's generic path for an LSTM variant without gate recurrence (FGR), with no
projection, recurrent dropout, zoneout, trace or edit in play; the rest still runs cells.py's
steps. Variable lengths as there: past its end a sequence holds its state, its output is 0.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from ..families import gate_blocks, merge_runs
from ..numpy import kernels
from ..numpy.ops import LN_EPS
from ..numpy.workspace import Workspace, aligned_empty
from ..spec import CellSpec


def covers(spec: CellSpec) -> bool:
    """Whether `spec`'s layers can run as LSTMSequence."""
    return spec.family == "lstm" and not spec.gate_recurrence


def run(spec: CellSpec, w: dict, x, h0, c0, mask=None, workspace: Workspace | None = None):
    """x (T, B, I), h0 and c0 (B, H), w the layer's weights by base name, mask None or
    (T, B, 1) bool, True inside each sequence -> (y (T, B, H), (h_T, c_T)). workspace: where
    the compiled steps take their buffers from (none: fresh tensors)."""
    extra = ([w["weight_peephole"]] if spec.peepholes else []) + (
        [w[n] for n in ("ln_ih_weight", "ln_hh_weight", "ln_cell_weight", "ln_cell_bias")]
        if spec.layer_norm else [])
    y, hT, cT = LSTMSequence.apply(spec, mask, workspace, x, h0, c0, w["weight_ih"], w["weight_hh"],
                                   w["bias_ih"], w["bias_hh"], *extra)
    return y, (hT, cT)


def _activate(name, a):
    """act(a) in place (a fresh tensor for a view it cannot write)."""
    if name == "tanh":
        return a.tanh_()
    if name == "identity":
        return a
    if name == "sigmoid4":                                  # 4 sigma(a) - 2
        return a.sigmoid_().mul_(4.0).sub_(2.0)
    return a.sigmoid_().mul_(2.0).sub_(1.0)                # sigmoid2: 2 sigma(a) - 1


def _activate_grad(name, y):
    """d act / d a as a function of y = act(a) (None: 1)."""
    if name == "tanh":
        return 1.0 - y * y
    if name == "identity":
        return None
    if name == "sigmoid4":
        return 1.0 - 0.25 * y * y
    return 0.5 - 0.5 * y * y                               # sigmoid2


def _ln_backward(dxhat, xhat, rstd):
    """Gradient with respect to x of xhat = layer_norm(x), given dL/dxhat (last axis)."""
    return rstd * (dxhat - dxhat.mean(-1, keepdim=True) - xhat * (dxhat * xhat).mean(-1, keepdim=True))


def _sig_grad(y):
    return y * (1.0 - y)


class LSTMSequence(torch.autograd.Function):
    """apply(spec, mask, workspace, x, h0, c0, W_ih, W_hh, b_ih, b_hh[, P][, g_ih, g_hh, g_c, b_c]) ->
    (y, h_T, c_T); P the peepholes (sigmoid gates, H), g/b the layer norms' weights.

    The gates are stored in spec.gates order: the "front" gates (those of i, f, g the variant
    has) first, then o. Per step, forward makes one product and about ten whole-tensor
    operations; backward about eight and one product, because every factor that does not
    depend on the incoming gradient (the gates' derivatives, f, o tanh'(c), ...) is formed
    for all steps at once before its loop.
    """

    @staticmethod
    def forward(ctx, spec, mask, workspace, x, h0, c0, W, R, b_i, b_h, *extra):
        T, B, I = x.shape
        H = h0.shape[1]
        G = W.shape[0]
        P = extra[0] if spec.peepholes else None
        ln = extra[1 if spec.peepholes else 0:] if spec.layer_norm else None
        x2 = x.reshape(T * B, I)
        compiled = _compiled(x)
        new, lease = _buffers(x, workspace if compiled else None)
        z = new(T, B, G)                                    # each step's pre-activations, then gates:
        if ln is not None and compiled:                     # x W^T, normalised in the loop
            xhat, xrstd = torch.mm(x2, W.t(), out=new(T * B, G)), x.new_empty(T * B, 1)
        elif ln is not None:                                # first the input's part, LN(W x) g_ih + b
            xhat, _, xrstd = torch.native_layer_norm(x2 @ W.t(), (G,), None, None, LN_EPS)
            torch.addcmul(b_i + b_h, xhat, ln[0], out=z.view(T * B, G))
        else:                                               # or W x + b
            xhat = xrstd = None
            torch.addmm(b_i + b_h, x2, W.t(), out=z.view(T * B, G))
        act = new(T, B, H)                                  # act_out(c) (of LN(c))
        hs, cs = new(T + 1, B, H), new(T + 1, B, H)
        hs[0], cs[0] = h0, c0
        # layer norm's statistics per step: R h's xhat and 1 / std, c's
        kept = (new(T, B, G), new(T, B, 1), new(T, B, H), new(T, B, 1)) if ln is not None else None
        if compiled:
            stats = (xhat, xrstd, *kept) if kept is not None else None
            _forward_steps_compiled(spec, mask, hs, cs, z, act, R, P, ln, stats, b_i + b_h)
        else:
            _forward_steps(spec, mask, hs, cs, z, act, R, P, ln, kept)
        if lease is not None:                               # back to the pool with the graph
            lease.bind(ctx)
        saved = [x, W, R, z, act, hs, cs] + ([P] if P is not None else []) + (
            [*ln, xhat, xrstd, *kept] if ln is not None else [])
        ctx.save_for_backward(*saved)
        ctx.spec, ctx.mask, ctx.workspace = spec, mask, workspace
        return (hs[1:].clone() if mask is None else hs[1:] * mask), hs[T].clone(), cs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dhT, dcT):
        spec, mask = ctx.spec, ctx.mask
        x, W, R, z, act, hs, cs, *rest = ctx.saved_tensors
        compiled = _compiled(x)
        new, lease = _buffers(x, ctx.workspace if compiled else None)
        P = rest.pop(0) if spec.peepholes else None
        ln = rest if spec.layer_norm else None
        T, B, I = x.shape
        H, G = hs.shape[2], W.shape[0]
        da = new(T, B, G)
        dr = new(T, B, G) if ln is not None else None       # layer norm: dL/d(R h) per step
        whole = torch.contiguous_format
        dh = torch.zeros_like(hs[0]) if dhT is None else dhT.clone(memory_format=whole)
        dc = torch.zeros_like(cs[0]) if dcT is None else dcT.clone(memory_format=whole)
        steps = _backward_steps_compiled if compiled else _backward_steps
        dh, dc, db, pg, lng = steps(spec, mask, z, act, cs, R, P, ln, dy, dh, dc, da, dr)
        x2, h2, da2 = x.reshape(T * B, I), hs[:-1].reshape(T * B, H), da.reshape(T * B, G)
        dR = (da2 if dr is None else dr.reshape(T * B, G)).t() @ h2
        if ln is not None and not compiled:                 # undo LN(x W^T) g_ih (compiled: done)
            da2, dg_ih = _ln_input_backward(da2, ln)
            lng = [dg_ih, *lng]
        dx, dW = da2 @ W, da2.t() @ x2
        if lease is not None:                               # nothing returned is a view of them
            lease.end()
        return (None, None, None, dx.reshape(T, B, I), dh, dc, dW, dR, db, db.clone(), *pg, *lng)


def _buffers(x, workspace):
    """(new(*shape), lease): the call's large buffers, from `workspace` when one is given (a
    fresh multi-megabyte tensor costs a page fault per page, at (100, 32, 32, 128) about a
    quarter of a layernorm step's time here), else fresh tensors like x."""
    if workspace is None:
        return (lambda *shape: x.new_empty(shape)), None
    lease = workspace.lease()
    return (lambda *shape: torch.from_numpy(lease(shape, np.float32))), lease


def _compiled(x) -> bool:
    """Whether the steps run on lstmlab's compiled loops (CPU, float32, numba installed, torch's
    BLAS found) rather than as torch operations: a dozen torch calls a step cost more than the
    step's product."""
    return (kernels.enabled and x.device.type == "cpu" and x.dtype == torch.float32
            and kernels.torch_sgemm() is not None)


def _forward_steps(spec, mask, hs, cs, z, act, R, P, ln, kept):
    """The steps of LSTMSequence.forward as torch operations (any device and dtype): adds the
    recurrent part to z (which holds the input's) and squashes it into the gates; writes act,
    hs[1:], cs[1:] and, with layer norm, kept = (rhat, rrstd, chat, crstd)."""
    T, B, G = z.shape
    H = hs.shape[2]
    blk = gate_blocks(spec, H)
    peep = {g: P[k] for k, g in enumerate(spec.sigmoid_gates)} if P is not None else {}
    if ln is not None:
        rhat, rrstd, chat, crstd = kept
    Rt = R.t()
    views = {g: z[:, :, sl].unbind(0) for g, sl in blk.items()}    # per gate, per step
    zs, acts, hl, cl = z.unbind(0), act.unbind(0), hs.unbind(0), cs.unbind(0)
    gi, gf, gg, go = (views.get(g) for g in "ifgo")
    pi, pf, po = (peep.get(g) for g in "ifo")
    # the sigmoid gates squashed right after the product: contiguous runs of columns
    early = [g for g in ("i", "f", "o") if g in blk and not (g == "o" and po is not None)]
    runs = [z[:, :, sl].unbind(0) for sl in merge_runs([blk[g] for g in early])]
    masks = None if mask is None else mask.unbind(0)
    coupled, act_in, act_out = spec.coupled_gates, spec.input_activation, spec.output_activation
    for t in range(T):
        zt, c, cn, a = zs[t], cl[t], cl[t + 1], acts[t]
        if ln is not None:
            r, _, rs = torch.native_layer_norm(hl[t] @ Rt, (G,), None, None, LN_EPS)
            rhat[t], rrstd[t] = r, rs
            zt.addcmul_(r, ln[1])
        else:
            zt.addmm_(hl[t], Rt)
        if pi is not None:                              # i, f look at c_prev
            gi[t].addcmul_(c, pi)
        if pf is not None:
            gf[t].addcmul_(c, pf)
        for run in runs:
            run[t].sigmoid_()
        g = _activate(act_in, gg[t])
        if coupled:                                     # c = c + i (g - c)
            torch.addcmul(c, gi[t], g - c, out=cn)
        else:
            ig = g if gi is None else gi[t] * g
            if gf is not None:                          # c = f c + i g
                torch.addcmul(ig, gf[t], c, out=cn)
            else:                                       # no forget gate: c = c + i g
                torch.add(c, ig, out=cn)
        if po is not None:                              # o looks at the new c
            go[t].addcmul_(cn, po).sigmoid_()
        if ln is not None:
            ch, _, cr = torch.native_layer_norm(cn, (H,), None, None, LN_EPS)
            chat[t], crstd[t] = ch, cr
            torch.addcmul(ln[3], ch, ln[2], out=a)
            _activate(act_out, a)
        elif act_out == "tanh":
            torch.tanh(cn, out=a)
        else:
            _activate(act_out, a.copy_(cn))
        if go is not None:
            torch.mul(go[t], a, out=hl[t + 1])
        else:
            hl[t + 1].copy_(a)
        if mask is not None and not masks[t].all():     # past its end a sequence holds its state
            torch.where(masks[t], cn, c, out=cn)
            torch.where(masks[t], hl[t + 1], hl[t], out=hl[t + 1])


def _backward_steps(spec, mask, z, act, cs, R, P, ln, dy, dh, dc_next, da, dr):
    """The steps of LSTMSequence.backward as torch operations (any device and dtype), from
    dL/d(h_T, c_T): writes da (and with layer norm dr) and returns dL/d(h_0, c_0), the bias
    gradient, [the peepholes' gradient] (or []) and, with layer norm, the gradients of g_hh, g_c
    and b_c (else [])."""
    T, B, G = da.shape
    H = cs.shape[2]
    blk = gate_blocks(spec, H)
    peep = {g: P[k] for k, g in enumerate(spec.sigmoid_gates)} if P is not None else {}
    i, f, g, o = (z[:, :, blk[n]] if n in blk else None for n in "ifgo")
    c_prev = cs[:-1]
    # the factors that do not depend on the incoming gradient, for all steps at once:
    # dL/da of each front gate = dc * M, dc_prev = dc * F, dout = dh * OK, dL/da_o = dh * AO
    kg = _activate_grad(spec.input_activation, g)
    front = []
    if i is not None:
        front.append((g - c_prev if spec.coupled_gates else g) * _sig_grad(i))
    if f is not None:
        front.append(c_prev * _sig_grad(f))
    front.append((kg if i is None else i * kg) if kg is not None else
                 (torch.ones_like(g) if i is None else i))
    n = len(front)
    M = torch.cat(front, 2).view(T, B, n, H).unbind(0)
    F = f if f is not None else (1.0 - i if spec.coupled_gates else None)
    K = _activate_grad(spec.output_activation, act)
    OK = o if K is None else (K if o is None else o * K)
    AO = None if o is None else act * _sig_grad(o)
    das = da.unbind(0)
    fronts = da[:, :, :n * H].view(T, B, n, H).unbind(0)
    das_o = None if o is None else da[:, :, blk["o"]].unbind(0)
    das_if = [da[:, :, blk[n]].unbind(0) if n in peep else None for n in ("i", "f")]
    Fs = None if F is None else F.unbind(0)
    OKs = None if OK is None else OK.unbind(0)
    AOs = None if AO is None else AO.unbind(0)
    dys = None if dy is None else dy.unbind(0)
    masks = None if mask is None else mask.unbind(0)
    pi, pf, po = (peep.get(n) for n in "ifo")
    if ln is not None:
        _, g_hh, g_c, _, _, _, rhat, rrstd, chat, crstd = ln
        du = da.new_empty(T, B, H)                          # dL/d(LN(c) g_c + b_c)
    for t in reversed(range(T)):
        if dys is not None:
            dh += dys[t] if masks is None else dys[t] * masks[t]
        held = masks is not None and not masks[t].all()
        if held:                                        # past its end: straight through
            pass_h, pass_c = dh * ~masks[t], dc_next * ~masks[t]
            dh, dc_next = dh * masks[t], dc_next * masks[t]
        dout = dh if OKs is None else dh * OKs[t]       # undo h = o act_out(c)
        if ln is not None:                              # undo act(LN(c) g_c + b_c)
            du[t] = dout
            dc = _ln_backward(dout * g_c, chat[t], crstd[t]).add_(dc_next)
        else:
            dc = dout + dc_next
        if AOs is not None:                             # undo o = sigma(...)
            d_o = torch.mul(dh, AOs[t], out=das_o[t])
            if po is not None:
                dc.addcmul_(d_o, po)
        torch.mul(dc.unsqueeze(1), M[t], out=fronts[t])   # undo c = f c_prev + i g
        dc_prev = dc if Fs is None else dc * Fs[t]
        if pi is not None:                              # undo i, f's look at c_prev
            dc_prev.addcmul_(das_if[0][t], pi)
        if pf is not None:
            dc_prev.addcmul_(das_if[1][t], pf)
        if ln is not None:                              # undo LN(R h) g_hh
            drt = _ln_backward(das[t] * g_hh, rhat[t], rrstd[t])
            dr[t] = drt
            dh = drt @ R
        else:
            dh = das[t] @ R
        dc_next = dc_prev
        if held:
            dh += pass_h
            dc_next = dc_next + pass_c
    db = da.sum((0, 1))
    pg = [] if P is None else [torch.stack([
        (da[:, :, blk[n]] * (cs[1:] if n == "o" else c_prev)).sum((0, 1)) for n in spec.sigmoid_gates])]
    if ln is None:
        return dh, dc_next, db, pg, []
    return dh, dc_next, db, pg, [(da * rhat).sum((0, 1)), (du * chat).sum((0, 1)), du.sum((0, 1))]


def _ln_input_backward(da2, ln):
    """dL/d(x W^T) and dL/dg_ih of LN(x W^T) g_ih, from da2 = dL/d(that) (T B, G)."""
    g_ih, xhat, xrstd = ln[0], ln[4], ln[5]
    return _ln_backward(da2 * g_ih, xhat, xrstd), (da2 * xhat).sum(0)


def _numpy(v, shape=(0,)):
    """A tensor's NumPy view for the compiled steps (an empty array of the rank it would have,
    for one the variant lacks)."""
    return np.zeros(shape, np.float32) if v is None else v.detach().contiguous().numpy()


def _shared(spec, H, mask, P, ln, bias=None) -> tuple:
    """What the compiled forward and backward loops share: (lay, mask, P, lnw) with lnw =
    (g_ih, g_hh, g_c, b_c, bias) (see kernels.variant_loops)."""
    m = np.zeros((0, 0), bool) if mask is None else mask[:, :, 0].contiguous().numpy()
    weights = [None] * 4 if ln is None else ln[:4]
    return (kernels.variant_layout(spec, H), m, _numpy(P, (0, 0)),
            tuple(_numpy(v) for v in (*weights, None if ln is None else bias)))


def _stats(stats, T, B):
    """The layer norms' statistics (xhat, xrstd, rhat, rrstd, chat, crstd) as (T, B, n) arrays
    (empty ones without layer norm)."""
    if stats is None:
        return (np.zeros((0, 0, 0), np.float32),) * 6
    return tuple(_numpy(v.view(T, B, -1)) for v in stats)


def _forward_steps_compiled(spec, mask, hs, cs, z, act, R, P, ln, stats, bias):
    """_forward_steps on the CPU in float32: the whole loop as one compiled call
    (kernels.variant_loops), each step's product on torch's BLAS, where torch's product and a
    dozen torch operations a step cost twice the time. With layer norm stats = (xhat (x W^T
    as it comes in), xrstd, rhat, rrstd, chat, crstd), and the loop writes all of z."""
    T, B, G = z.shape
    lay, m, Pn, lnw = _shared(spec, hs.shape[2], mask, P, ln, bias)
    r = aligned_empty((B, G) if ln is not None else (0, 0), np.float32)   # R h, normalised in the step
    zn, hsn, csn, actn, Rn = map(_numpy, (z, hs, cs, act, R))
    run, st = kernels.variant_loops().run, _stats(stats, T, B)
    kernels.in_parallel([functools.partial(run, lay, zn, r, hsn, csn, actn, Rn, m, Pn, lnw, st, lo, hi)
                         for lo, hi in kernels.row_parts(B)])


def _backward_steps_compiled(spec, mask, z, act, cs, R, P, ln, dy, dh, dc, da, dr):
    """_backward_steps on the CPU in float32: the whole loop as one compiled call, which also
    undoes the input's layer norm (da then holds dL/d(x W^T)) and sums the bias's, the
    peepholes' and the layer norms' gradients."""
    T, B, G = da.shape
    H = cs.shape[2]
    lay, m, Pn, lnw = _shared(spec, H, mask, P, ln)
    nP = 0 if P is None else P.shape[0]
    sizes = [G, nP * H] + ([G, G, H, H] if ln is not None else [])  # db, dP, dg_ih, dg_hh, dg_c, db_c
    rows = kernels.row_parts(B)
    sums = np.zeros((len(rows), sum(sizes)))                    # a row of sums per part
    hold = torch.zeros_like(dh)                                 # dL/dh that skipped a held step
    args = (lay, *(_numpy(v, (0, 0, 0)) for v in (z, act, cs, dy, dh, hold, dc, da)), m, Pn, lnw,
            _stats(None if ln is None else ln[4:], T, B), _numpy(dr, (0, 0, 0)))
    run_back, Rn = kernels.variant_loops().run_back, _numpy(R)
    kernels.in_parallel([functools.partial(run_back, *args, sums[k], Rn, lo, hi)
                         for k, (lo, hi) in enumerate(rows)])
    parts = torch.from_numpy(sums.sum(0).astype(np.float32)).split(sizes)
    pg = [parts[1].view(nP, H)] if P is not None else []
    return dh + hold, dc, parts[0], pg, list(parts[2:])
