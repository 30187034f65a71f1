"""A layer and direction as an ONNX Scan whose body writes the cell's step op by op: every
variant ONNX lacks (and every variant with native=False)."""

from __future__ import annotations

import numpy as np

from ...families import gate_blocks, state_names, state_sizes
from ...numpy.recurrent import Recurrent
from .builder import Builder


def loop_direction(b: Builder, model: Recurrent, k: int, d: int, x, x0, state_in):
    """One layer and direction as a Scan; returns (y (T, B, R), final states [(1, B, n)...]).

    x: this layer's input (T, B, F); x0: the model's input, for the batch size.
    """
    spec, D, H = model.spec, model.num_directions, model.hidden_size
    G, blk = spec.num_gates * H, gate_blocks(spec, H)
    sfx = f"_l{k}" + ("_reverse" if d else "")
    p = {name[: -len(sfx)]: v for name, v in model.params.items() if name.endswith(sfx)}

    # the input part of every step in one product: (T, B, G)
    xw = b.op("MatMul", [x, b.const(p["weight_ih"].T, f"weight_ih{sfx}_T")])
    bias = p["bias_ih"] + p["bias_hh"]
    if spec.family == "gru" and spec.linear_before_reset:       # b_hn sits inside r * (...)
        bias = p["bias_ih"].copy()
        bias[blk["r"]] += p["bias_hh"][blk["r"]]
        bias[blk["z"]] += p["bias_hh"][blk["z"]]
    if spec.layer_norm:                                          # LN(W x) gamma + b
        xw = b.op("Mul", [b.layer_norm(xw), b.const(p["ln_ih_weight"], f"ln_ih_weight{sfx}")])
    xp = b.op("Add", [xw, b.const(bias, f"bias{sfx}")])

    sizes = state_sizes(spec, H, model.proj_size)
    init = []
    for j, n in enumerate(sizes):
        if j < len(state_in):                                    # (L*D, B, n) -> (B, n)
            init.append(b.op("Gather", [state_in[j], b.const(np.array(k * D + d), dtype=np.int64)],
                             axis=0))
        else:
            init.append(b.batch_zeros(x0, n))

    prev = [b.name(f"{n}_prev") for n in state_names(spec)]
    x_t = b.name("xp_t")
    with b.subgraph() as body_nodes:
        step = {"lstm": _lstm_step, "gru": _gru_step, "rnn": _rnn_step}[spec.family]
        new = step(b, spec, H, p, sfx, prev, x_t)
        new.append(new[0])                                       # the scan output: h at each step
        seen = set(prev) | {x_t} | {t.name for t in b.inits}
        for j, v in enumerate(new):             # body outputs must be distinct and made inside
            if v in seen:
                new[j] = b.op("Identity", [v])
            seen.add(new[j])
    body = b.helper.make_graph(
        body_nodes, f"step{sfx}",
        [b.value_info(v, ["batch", n]) for v, n in zip(prev, sizes)]
        + [b.value_info(x_t, ["batch", G])],
        [b.value_info(v, ["batch", n]) for v, n in zip(new, sizes)]
        + [b.value_info(new[-1], ["batch", sizes[0]])])
    outs = b.op("Scan", init + [xp], n_out=len(sizes) + 1, body=body, num_scan_inputs=1,
                scan_input_directions=[d], scan_output_directions=[d])
    finals = [b.op("Unsqueeze", [o, b.ints([0])]) for o in outs[: min(len(sizes), 2)]]
    return outs[-1], finals


def _lstm_step(b: Builder, spec, H, p, sfx, prev, x_t):
    """The step of cells.LSTMCell, every variant: returns [h, c(, gates)] (B, n) each.
    p: the layer's parameters by base name; prev: the state's names; x_t: W x + b's."""
    h, c = prev[0], prev[1]
    sig = spec.sigmoid_gates                                                # rows of weight_peephole

    def const(name):
        return b.const(p[name], f"{name}{sfx}")

    def const_T(name):                                                      # x @ W^T
        return b.const(p[name].T, f"{name}{sfx}_T")

    rh = b.op("MatMul", [h, const_T("weight_hh")])                          # R h: (B, G)
    if spec.layer_norm:
        rh = b.op("Mul", [b.layer_norm(rh), const("ln_hh_weight")])
    a = b.op("Add", [rh, x_t])
    pre = dict(zip(spec.gates, b.split(a, [H] * len(spec.gates))))          # a_i, a_f, a_g, a_o
    if spec.peepholes:
        peep = {g: b.const(p["weight_peephole"][r], f"weight_peephole{sfx}_{g}")
                for r, g in enumerate(sig)}
        for g in ("i", "f"):
            if g in peep:                                                   # i, f look at c_prev
                pre[g] = b.op("Add", [pre[g], b.op("Mul", [c, peep[g]])])
    if spec.gate_recurrence:                                                # W_gg gates_prev
        zg = b.op("MatMul", [prev[2], const_T("weight_gg")])
        for g, z in zip(sig, b.split(zg, [H] * len(sig))):
            pre[g] = b.op("Add", [pre[g], z])

    i = b.op("Sigmoid", [pre["i"]]) if "i" in pre else None
    f = b.op("Sigmoid", [pre["f"]]) if "f" in pre else None
    gates = {"i": i, "f": f}
    if spec.coupled_gates:                                                  # f = 1 - i
        f = b.op("Sub", [b.scalar(1.0), i])
    g = b.activate(spec.input_activation, pre["g"])
    ig = b.op("Mul", [i, g]) if i else g
    c_new = b.op("Add", [b.op("Mul", [f, c]), ig]) if f else b.op("Add", [c, ig])  # c = f c + i g

    o = None
    if "o" in pre:
        ao = pre["o"]
        if spec.peepholes:                                                  # o looks at the new c
            ao = b.op("Add", [ao, b.op("Mul", [c_new, peep["o"]])])
        o = gates["o"] = b.op("Sigmoid", [ao])
    if spec.layer_norm:                                                     # LN(c) gamma + beta
        u = b.op("Mul", [b.layer_norm(c_new), const("ln_cell_weight")])
        u = b.op("Add", [u, const("ln_cell_bias")])
    else:
        u = c_new
    act = b.activate(spec.output_activation, u)
    h_new = b.op("Mul", [o, act]) if o else act                             # h = o act_out(c)
    if "weight_hr" in p:                                                    # h = W_hr h
        h_new = b.op("MatMul", [h_new, const_T("weight_hr")])
    new = [h_new, c_new]
    if spec.gate_recurrence:                                                # this step's gates
        last = [gates[g] for g in sig]
        new.append(b.op("Concat", last, axis=-1) if len(last) > 1 else last[0])
    return new


def _gru_step(b: Builder, spec, H, p, sfx, prev, x_t):
    """The step of cells.GRUCell: returns [h] (B, H)."""
    h, blk = prev[0], gate_blocks(spec, H)
    rz_rows = slice(blk["r"].start, blk["z"].stop)                          # r and z: 2H rows
    x_rz, x_n = b.split(x_t, [2 * H, H])
    W_T = p["weight_hh"].T                                                  # (H, 3H)
    if spec.linear_before_reset:                                            # R h + b_h, b only on n
        b_h = np.zeros_like(p["bias_hh"])
        b_h[blk["n"]] = p["bias_hh"][blk["n"]]
        hr = b.op("Add", [b.op("MatMul", [h, b.const(W_T, f"weight_hh{sfx}_T")]),
                          b.const(b_h, f"bias_hn{sfx}")])
        hr_rz, hr_n = b.split(hr, [2 * H, H])
        rz = b.op("Sigmoid", [b.op("Add", [x_rz, hr_rz])])
        r, z = b.split(rz, [H, H])
        a_n = b.op("Add", [b.op("Mul", [r, hr_n]), x_n])                  # r * (R_n h + b_hn)
    else:
        rh_rz = b.op("MatMul", [h, b.const(W_T[:, rz_rows], f"weight_hh_rz{sfx}_T")])
        rz = b.op("Sigmoid", [b.op("Add", [rh_rz, x_rz])])
        r, z = b.split(rz, [H, H])
        W_n_T = b.const(W_T[:, blk["n"]], f"weight_hh_n{sfx}_T")
        rh = b.op("MatMul", [b.op("Mul", [r, h]), W_n_T])
        a_n = b.op("Add", [rh, x_n])                                        # R_n (r * h)
    n = b.op("Tanh", [a_n])
    return [b.op("Add", [b.op("Mul", [b.op("Sub", [h, n]), z]), n])]      # n + z (h - n)


def _rnn_step(b: Builder, spec, H, p, sfx, prev, x_t):
    """The step of cells.RNNCell: returns [h] (B, H)."""
    rh = b.op("MatMul", [prev[0], b.const(p["weight_hh"].T, f"weight_hh{sfx}_T")])
    a = b.op("Add", [rh, x_t])
    return [b.activate(spec.nonlinearity, a)]
