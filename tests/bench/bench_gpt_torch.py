#!/usr/bin/python3
"""PyTorch side of tests/bench/bench_gpt.c: the identical mini GPT (nanoGPT's
model: pre-LN blocks, fused c_attn, causal attention, GELU(tanh) MLP 4C,
final LayerNorm, tied head; 4 layers, 4 heads, 256 channels, vocabulary 256,
batch 8, sequence 128; or with --config 124m GPT-2 124M: vocabulary 50257,
context 1024, 12 layers, 12 heads, 768 channels, batch 4, sequence 64)
trained with AdamW. Prints the median ms per step of
--steps steps after two warm-up steps, wall and process CPU time, as
"MEDIAN_MS <wall> <cpu>".

torch 1.13 has no fused scaled_dot_product_attention, so attention is
nanoGPT's explicit path (softmax of masked q kᵀ, times v), as nanoGPT runs
on this PyTorch. Run: /usr/bin/python3 tests/bench/bench_gpt_torch.py --threads 1"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# (vocab, block size, layers, heads, channels, batch, sequence)
CONFIGS = {"mini": (256, 128, 4, 4, 256, 8, 128),
           "124m": (50257, 1024, 12, 12, 768, 4, 64)}
V, BLOCK, L, H, C, B, T = CONFIGS["mini"]


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)
        self.register_buffer("mask", torch.tril(torch.ones(BLOCK, BLOCK, dtype=torch.bool)))

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(b, t, H, c // H).transpose(1, 2)
        k = k.view(b, t, H, c // H).transpose(1, 2)
        v = v.view(b, t, H, c // H).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = F.softmax(att.masked_fill(~self.mask[:t, :t], float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(BLOCK, C)
        self.h = nn.ModuleList([Block() for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, V, bias=False)
        self.wte.weight = self.lm_head.weight

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for blk in self.h:
            x = blk(x)
        return self.lm_head(self.ln_f(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="mini")
    a = ap.parse_args()
    global V, BLOCK, L, H, C, B, T
    V, BLOCK, L, H, C, B, T = CONFIGS[a.config]
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = GPT()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))
    times, cpus = [], []
    for i in range(a.steps + 2):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).view(-1, V), y.view(-1))
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(1e3 * (time.perf_counter() - t0))
            cpus.append(1e3 * (time.process_time() - c0))
    print("MEDIAN_MS %.2f %.2f" % (statistics.median(times), statistics.median(cpus)))


if __name__ == "__main__":
    main()
