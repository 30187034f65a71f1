"""One LSTM layer and direction over a whole sequence as one autograd Function.

PyTorch's fused kernels know only the plain LSTM. Every other variant (peepholes, CIFG,
layer norm, the gateless ablations, other squashing functions) ran through cells.py's step
with autograd recording a graph of a dozen nodes per step, and backward walking it: 4-7x
the fused kernel's time. Here forward runs the steps without a graph and keeps what
backward needs (the gates, c, tanh c, layer norm statistics), and backward is the
recurrence written out, as lstmlab.numpy's cells do it: per step a handful of whole-tensor
operations and one product, then every weight gradient as one product over all steps.
The equations are cells.LSTMCell's (tests hold the two equal in float64, and to autograd).

Used by Recurrent's generic path for an LSTM variant without gate recurrence (FGR), with no
projection, recurrent dropout, zoneout, trace or edit in play; the rest still runs cells.py's
steps. Variable lengths as there: past its end a sequence holds its state, its output is 0.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..families import gate_blocks, merge_runs
from ..numpy.ops import LN_EPS
from ..spec import CellSpec


def covers(spec: CellSpec) -> bool:
    """Whether `spec`'s layers can run as LSTMSequence."""
    return spec.family == "lstm" and not spec.gate_recurrence


def run(spec: CellSpec, w: dict, x, h0, c0, mask=None):
    """x (T, B, I), h0 and c0 (B, H), w the layer's weights by base name, mask None or
    (T, B, 1) bool, True inside each sequence -> (y (T, B, H), (h_T, c_T))."""
    extra = ([w["weight_peephole"]] if spec.peepholes else []) + (
        [w[n] for n in ("ln_ih_weight", "ln_hh_weight", "ln_cell_weight", "ln_cell_bias")]
        if spec.layer_norm else [])
    y, hT, cT = LSTMSequence.apply(spec, mask, x, h0, c0, w["weight_ih"], w["weight_hh"],
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
    """apply(spec, mask, x, h0, c0, W_ih, W_hh, b_ih, b_hh[, P][, g_ih, g_hh, g_c, b_c]) ->
    (y, h_T, c_T); P the peepholes (sigmoid gates, H), g/b the layer norms' weights.

    The gates are stored in spec.gates order: the "front" gates (those of i, f, g the variant
    has) first, then o. Per step, forward makes one product and about ten whole-tensor
    operations; backward about eight and one product, because every factor that does not
    depend on the incoming gradient (the gates' derivatives, f, o tanh'(c), ...) is formed
    for all steps at once before its loop.
    """

    @staticmethod
    def forward(ctx, spec, mask, x, h0, c0, W, R, b_i, b_h, *extra):
        T, B, I = x.shape
        H = h0.shape[1]
        G = W.shape[0]
        blk = gate_blocks(spec, H)
        P = extra[0] if spec.peepholes else None
        ln = extra[1 if spec.peepholes else 0:] if spec.layer_norm else None
        peep = {g: P[k] for k, g in enumerate(spec.sigmoid_gates)} if P is not None else {}
        x2 = x.reshape(T * B, I)
        if ln is not None:                                  # LN(W x) g_ih + b: statistics kept
            xhat, _, xrstd = torch.native_layer_norm(x2 @ W.t(), (G,), None, None, LN_EPS)
            xp = torch.addcmul(b_i + b_h, xhat, ln[0]).reshape(T, B, G)
        else:
            xhat = xrstd = None
            xp = torch.addmm(b_i + b_h, x2, W.t()).reshape(T, B, G)
        new = x.new_empty
        z, act = new(T, B, G), new(T, B, H)                 # the gates; act_out(c) (of LN(c))
        hs, cs = new(T + 1, B, H), new(T + 1, B, H)
        hs[0], cs[0] = h0, c0
        if ln is not None:
            rhat, rrstd, chat, crstd = new(T, B, G), new(T, B, 1), new(T, B, H), new(T, B, 1)
        Rt = R.t()
        views = {g: z[:, :, sl].unbind(0) for g, sl in blk.items()}    # per gate, per step
        zs, xps, acts, hl, cl = z.unbind(0), xp.unbind(0), act.unbind(0), hs.unbind(0), cs.unbind(0)
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
                torch.addcmul(xps[t], r, ln[1], out=zt)
            else:
                torch.addmm(xps[t], hl[t], Rt, out=zt)
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
        saved = [x, W, R, z, act, hs, cs] + ([P] if P is not None else []) + (
            [*ln, xhat, xrstd, rhat, rrstd, chat, crstd] if ln is not None else [])
        ctx.save_for_backward(*saved)
        ctx.spec, ctx.mask = spec, mask
        return (hs[1:].clone() if mask is None else hs[1:] * mask), hs[T].clone(), cs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dhT, dcT):
        spec, mask = ctx.spec, ctx.mask
        x, W, R, z, act, hs, cs, *rest = ctx.saved_tensors
        P = rest.pop(0) if spec.peepholes else None
        ln = rest if spec.layer_norm else None
        T, B, I = x.shape
        H, G = hs.shape[2], W.shape[0]
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
        da = x.new_empty(T, B, G)
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
            g_ih, g_hh, g_c, _, xhat, xrstd, rhat, rrstd, chat, crstd = ln
            dr, du = x.new_empty(T, B, G), x.new_empty(T, B, H)
        dh = torch.zeros_like(hs[0]) if dhT is None else dhT.clone()
        dc_next = torch.zeros_like(cs[0]) if dcT is None else dcT
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
        da2 = da.reshape(T * B, G)
        x2, h2 = x.reshape(T * B, I), hs[:-1].reshape(T * B, H)
        db = da2.sum(0)
        if ln is not None:
            dwx = _ln_backward(da2 * g_ih, xhat, xrstd)
            dx, dW, dR = dwx @ W, dwx.t() @ x2, dr.reshape(T * B, G).t() @ h2
            lng = [(da2 * xhat).sum(0), (da * rhat).sum((0, 1)), (du * chat).sum((0, 1)), du.sum((0, 1))]
        else:
            dx, dW, dR = da2 @ W, da2.t() @ x2, da2.t() @ h2
            lng = []
        pg = [] if P is None else [torch.stack([
            (da[:, :, blk[n]] * (cs[1:] if n == "o" else c_prev)).sum((0, 1)) for n in spec.sigmoid_gates])]
        return (None, None, dx.reshape(T, B, I), dh, dc_next, dW, dR, db, db.clone(), *pg, *lng)

