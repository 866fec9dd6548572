#!/usr/bin/python3
"""Golden values for losses, optimizers, clipping and LR schedules (suite "optim").

Run with Debian's /usr/bin/python3 (torch 1.13):
    /usr/bin/python3 tests/golden/make_golden_optim.py
Writes tests/golden/optim_loss.txt, optim_train.txt, optim_sched.txt in the
record format of tests/common/testutil.h. Inputs are written too, so the C
tests read exactly the tensors PyTorch saw.
"""
import math
import warnings

import torch
import torch.nn.functional as F

from golden_io import Records

warnings.filterwarnings("ignore")
torch.manual_seed(1234)


FILES = []


def Writer(name):
    """A record file of 8 values a line, saved when the script ends."""
    FILES.append(Records(name, per_line=8))
    return FILES[-1]


# ------------------------------------------------------------------ losses
def losses():
    w = Writer("optim_loss.txt")
    inp = {}
    inp["x_reg"] = torch.randn(3, 4) * 1.5
    inp["t_reg"] = torch.randn(3, 4)
    inp["p_bce"] = torch.rand(3, 4) * 0.9 + 0.05
    inp["t_bce"] = torch.rand(3, 4)
    inp["w_bce"] = torch.rand(4) + 0.5
    inp["pw"] = torch.rand(4) * 2 + 0.5
    inp["x_kl"] = torch.randn(3, 4).log_softmax(1)
    t = torch.rand(3, 4)
    t[0, 1] = 0.0  # xlogy(0, 0) = 0
    inp["t_kl"] = t / t.sum(1, keepdim=True)
    inp["tl_kl"] = torch.randn(3, 4).log_softmax(1)
    inp["x_ce"] = torch.randn(5, 4) * 2
    inp["y_ce0"] = torch.tensor([0, 3, 1, 2, 1])
    inp["y_ce"] = torch.tensor([0, 3, -100, 2, 1])
    inp["w_ce"] = torch.rand(4) + 0.25
    inp["p_ce"] = torch.rand(5, 4).softmax(1)
    inp["x_ce3"] = torch.randn(2, 3, 2)
    inp["y_ce3"] = torch.tensor([[0, 2], [1, 1]])
    inp["w_ce3"] = torch.rand(3) + 0.5
    inp["x_ce1"] = torch.randn(4)
    inp["y_ce1"] = torch.tensor(2)
    inp["x_nll"] = torch.randn(5, 4).log_softmax(1)
    for k, v in inp.items():
        w.put(k, v)

    I = inp
    cases = [
        ("mse", "x_reg", lambda x, r: F.mse_loss(x, I["t_reg"], reduction=r)),
        ("l1", "x_reg", lambda x, r: F.l1_loss(x, I["t_reg"], reduction=r)),
        ("smooth_l1", "x_reg", lambda x, r: F.smooth_l1_loss(x, I["t_reg"], reduction=r, beta=1.0)),
        ("smooth_l1_b05", "x_reg", lambda x, r: F.smooth_l1_loss(x, I["t_reg"], reduction=r, beta=0.5)),
        ("smooth_l1_b0", "x_reg", lambda x, r: F.smooth_l1_loss(x, I["t_reg"], reduction=r, beta=0.0)),
        ("huber", "x_reg", lambda x, r: F.huber_loss(x, I["t_reg"], reduction=r, delta=1.0)),
        ("huber_d07", "x_reg", lambda x, r: F.huber_loss(x, I["t_reg"], reduction=r, delta=0.7)),
        ("bce", "p_bce", lambda x, r: F.binary_cross_entropy(x, I["t_bce"], reduction=r)),
        ("bce_w", "p_bce", lambda x, r: F.binary_cross_entropy(x, I["t_bce"], weight=I["w_bce"], reduction=r)),
        ("bcel", "x_reg", lambda x, r: F.binary_cross_entropy_with_logits(x, I["t_bce"], reduction=r)),
        ("bcel_w", "x_reg", lambda x, r: F.binary_cross_entropy_with_logits(x, I["t_bce"], weight=I["w_bce"], reduction=r)),
        ("bcel_pw", "x_reg", lambda x, r: F.binary_cross_entropy_with_logits(x, I["t_bce"], pos_weight=I["pw"], reduction=r)),
        ("bcel_wpw", "x_reg", lambda x, r: F.binary_cross_entropy_with_logits(
            x, I["t_bce"], weight=I["w_bce"], pos_weight=I["pw"], reduction=r)),
        ("kl", "x_kl", lambda x, r: F.kl_div(x, I["t_kl"], reduction=r)),
        ("kl_log", "x_kl", lambda x, r: F.kl_div(x, I["tl_kl"], reduction=r, log_target=True)),
        ("ce", "x_ce", lambda x, r: F.cross_entropy(x, I["y_ce0"], reduction=r)),
        ("ce_w", "x_ce", lambda x, r: F.cross_entropy(x, I["y_ce0"], weight=I["w_ce"], reduction=r)),
        ("ce_ign", "x_ce", lambda x, r: F.cross_entropy(x, I["y_ce"], reduction=r)),
        ("ce_ign2", "x_ce", lambda x, r: F.cross_entropy(x, I["y_ce0"], ignore_index=2, reduction=r)),
        ("ce_ls", "x_ce", lambda x, r: F.cross_entropy(x, I["y_ce0"], label_smoothing=0.1, reduction=r)),
        ("ce_w_ls_ign", "x_ce", lambda x, r: F.cross_entropy(
            x, I["y_ce"], weight=I["w_ce"], label_smoothing=0.2, reduction=r)),
        ("ce_prob", "x_ce", lambda x, r: F.cross_entropy(x, I["p_ce"], reduction=r)),
        ("ce_prob_w_ls", "x_ce", lambda x, r: F.cross_entropy(
            x, I["p_ce"], weight=I["w_ce"], label_smoothing=0.15, reduction=r)),
        ("ce_kdim", "x_ce3", lambda x, r: F.cross_entropy(x, I["y_ce3"], weight=I["w_ce3"], reduction=r)),
        ("ce_1d", "x_ce1", lambda x, r: F.cross_entropy(x, I["y_ce1"], reduction=r)),
        ("nll", "x_nll", lambda x, r: F.nll_loss(x, I["y_ce0"], reduction=r)),
        ("nll_w_ign", "x_nll", lambda x, r: F.nll_loss(x, I["y_ce"], weight=I["w_ce"], reduction=r)),
    ]
    for name, xname, fn in cases:
        reds = ["none", "mean", "sum"] + (["batchmean"] if name.startswith("kl") else [])
        for red in reds:
            x = inp[xname].clone().requires_grad_(True)
            out = fn(x, red)
            if red == "none":
                seed = torch.linspace(0.5, 1.5, out.numel()).reshape(out.shape)
                out.backward(seed)
            else:
                out.backward()
            w.put("%s.%s.out" % (name, red), out)
            w.put("%s.%s.grad" % (name, red), x.grad)

    # BCE with a target that requires grad: PyTorch 1.13 differentiates the
    # target too (-logit(x) * weight, scaled by the reduction). No new random
    # draws here, so the later sections see the same generator state.
    for name, weight in (("bce_tgt", None), ("bce_w_tgt", I["w_bce"])):
        for red in ("none", "mean", "sum"):
            x = I["p_bce"].clone().requires_grad_(True)
            t = I["t_bce"].clone().requires_grad_(True)
            out = F.binary_cross_entropy(x, t, weight=weight, reduction=red)
            if red == "none":
                out.backward(torch.linspace(0.5, 1.5, out.numel()).reshape(out.shape))
            else:
                out.backward()
            w.put("%s.%s.out" % (name, red), out)
            w.put("%s.%s.grad" % (name, red), x.grad)
            w.put("%s.%s.tgrad" % (name, red), t.grad)


# ---------------------------------------------------------- optimizers
def mlp_params():
    g = torch.Generator().manual_seed(7)
    W1 = torch.randn(8, 4, generator=g) * 0.5
    b1 = torch.randn(8, generator=g) * 0.1
    W2 = torch.randn(3, 8, generator=g) * 0.5
    b2 = torch.randn(3, generator=g) * 0.1
    X = torch.randn(6, 4, generator=g)
    Y = torch.tensor([0, 2, 1, 1, 0, 2])
    return [W1, b1, W2, b2], X, Y


def mlp_loss(p, X, Y):
    h = torch.tanh(F.linear(X, p[0], p[1]))
    return F.cross_entropy(F.linear(h, p[2], p[3]), Y)


def train():
    w = Writer("optim_train.txt")
    p0, X, Y = mlp_params()
    for i, t in enumerate(p0):
        w.put("p%d" % i, t)
    w.put("X", X)
    w.put("Y", Y)
    O = torch.optim
    configs = {
        "sgd": lambda p: O.SGD(p, lr=0.1),
        "sgd_mom": lambda p: O.SGD(p, lr=0.1, momentum=0.9),
        "sgd_mom_damp_wd": lambda p: O.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
        "sgd_nesterov": lambda p: O.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.001),
        "adam": lambda p: O.Adam(p, lr=0.01),
        "adam_wd_ams": lambda p: O.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01, amsgrad=True),
        "adamw": lambda p: O.AdamW(p, lr=0.01, weight_decay=0.1),
        "adamw_ams": lambda p: O.AdamW(p, lr=0.02, amsgrad=True),
        "rmsprop": lambda p: O.RMSprop(p, lr=0.01),
        "rmsprop_full": lambda p: O.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.9, centered=True, weight_decay=0.01),
        "adagrad": lambda p: O.Adagrad(p, lr=0.1),
        "adagrad_full": lambda p: O.Adagrad(p, lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1,
                                            weight_decay=0.01),
        "sgd_groups": lambda p: O.SGD([{"params": p[:2], "momentum": 0.9},
                                       {"params": p[2:], "lr": 0.05}], lr=0.1),
        "adam_frozen": lambda p: O.Adam(p, lr=0.01),
    }
    for name, make in configs.items():
        p = [t.clone().requires_grad_(True) for t in p0]
        if name == "adam_frozen":
            p[3].requires_grad_(False)
        opt = make(p)
        losses = []
        for _ in range(5):
            opt.zero_grad()
            loss = mlp_loss(p, X, Y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        w.put(name + ".losses", torch.tensor(losses))
        for i, t in enumerate(p):
            w.put("%s.p%d" % (name, i), t)

    # gradient clipping on the gradients of one backward
    for tag, max_norm, nt in [("n2", 0.5, 2.0), ("n1", 0.3, 1.0), ("ninf", 0.1, math.inf), ("big", 100.0, 2.0)]:
        p = [t.clone().requires_grad_(True) for t in p0]
        mlp_loss(p, X, Y).backward()
        norm = torch.nn.utils.clip_grad_norm_(p, max_norm, norm_type=nt)
        w.put("clip.%s.norm" % tag, norm.reshape(1))
        for i, t in enumerate(p):
            w.put("clip.%s.g%d" % (tag, i), t.grad)
    p = [t.clone().requires_grad_(True) for t in p0]
    mlp_loss(p, X, Y).backward()
    torch.nn.utils.clip_grad_value_(p, 0.05)
    for i, t in enumerate(p):
        w.put("clip.value.g%d" % i, t.grad)


# ------------------------------------------------------------ schedules
def sched():
    w = Writer("optim_sched.txt")
    S = torch.optim.lr_scheduler
    metrics = torch.tensor([1.0, 0.9, 0.95, 0.94, 0.93, 0.92, 0.85, 0.86, 0.86, 0.86,
                            0.86, 0.7, 0.7, 0.7, 0.7, 0.7, 0.69, 0.695, 0.7, 0.71,
                            0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], dtype=torch.float64)
    w.put("plateau.metrics", metrics)
    configs = {
        "step": lambda o: S.StepLR(o, step_size=7, gamma=0.5),
        "multistep": lambda o: S.MultiStepLR(o, milestones=[5, 12, 12, 20], gamma=0.3),
        "exponential": lambda o: S.ExponentialLR(o, gamma=0.9),
        "cosine": lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
        "warm": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=2, eta_min=0.01),
        "warm1": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=5),
        "linear": lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=8),
        "linear_down": lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=10),
        "onecycle": lambda o: S.OneCycleLR(o, max_lr=1.0, total_steps=30, cycle_momentum=False),
        "onecycle_lin": lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=30, pct_start=0.25,
                                               anneal_strategy="linear", div_factor=10,
                                               final_div_factor=100, cycle_momentum=False),
        "plateau": lambda o: S.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=2, threshold=0.01,
                                                 cooldown=1, min_lr=0.01),
        "plateau_max": lambda o: S.ReduceLROnPlateau(o, mode="max", factor=0.3, patience=1),
    }
    for name, make in configs.items():
        a = torch.zeros(2, requires_grad=True)
        b = torch.zeros(2, requires_grad=True)
        opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1)
        s = make(opt)
        lrs = []
        for e in range(30):
            if name.startswith("plateau"):
                m = metrics[e].item() if name == "plateau" else -metrics[e].item()
                s.step(m)
            elif e > 0:
                s.step()
            lrs.append([g["lr"] for g in opt.param_groups])
        w.put(name + ".lrs", torch.tensor(lrs, dtype=torch.float64))

    # one-cycle with PyTorch's default momentum cycling (0.85 <-> 0.95)
    for name in ["onecycle_sgd_mom", "onecycle_adam_mom"]:
        a = torch.zeros(2, requires_grad=True)
        b = torch.zeros(2, requires_grad=True)
        groups = [{"params": [a]}, {"params": [b], "lr": 0.05}]
        if "sgd" in name:
            opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
            s = S.OneCycleLR(opt, max_lr=1.0, total_steps=30)
        else:
            opt = torch.optim.Adam(groups, lr=0.1)
            s = S.OneCycleLR(opt, max_lr=0.3, total_steps=30, pct_start=0.4, anneal_strategy="linear")
        lrs, moms = [], []
        for e in range(30):
            if e > 0:
                s.step()
            lrs.append([g["lr"] for g in opt.param_groups])
            moms.append([g["momentum"] if "sgd" in name else g["betas"][0] for g in opt.param_groups])
        w.put(name + ".lrs", torch.tensor(lrs, dtype=torch.float64))
        w.put(name + ".moms", torch.tensor(moms, dtype=torch.float64))


losses()
train()
sched()
for golden in FILES:
    golden.save()
