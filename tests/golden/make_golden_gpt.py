#!/usr/bin/python3
"""Golden values for tests/module/test_gpt.c: a 2-layer GPT written the way
nanoGPT writes it (pre-LN blocks, fused c_attn, causal attention, GELU(tanh)
MLP 4C, final LayerNorm, lm_head tied to wte), with weights fixed by this
script. Records: every state-dict entry ("w.<name>"), the tokens and targets,
the logits and the cross-entropy loss, every parameter's gradient
("g.<name>") and every parameter after one AdamW step ("a.<name>"; decay
0.1 on matrices, none on biases and LayerNorm weights, as nanoGPT's
configure_optimizers groups them).

Run with Debian's interpreter: /usr/bin/python3 tests/golden/make_golden_gpt.py
Writes tests/golden/gpt.txt in the testutil.h record format."""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from golden_io import Records, fmt_repr

torch.manual_seed(4242)
golden = Records("gpt.txt", float_fmt=fmt_repr, bool_dtype="f32")
put = golden.put
put_module = golden.put_module

V, T, L, H, C = 40, 16, 2, 2, 16   # vocab, block size, layers, heads, channels
B, S = 2, 12                       # batch, sequence used


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(b, t, H, c // H).transpose(1, 2)
        k = k.view(b, t, H, c // H).transpose(1, 2)
        v = v.view(b, t, H, c // H).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
        att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = nn.Linear(C, 4 * C)
        self.c_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C)
        self.attn = Attn()
        self.ln_2 = nn.LayerNorm(C)
        self.mlp = MLP()

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(V, C), wpe=nn.Embedding(T, C),
            h=nn.ModuleList([Block() for _ in range(L)]), ln_f=nn.LayerNorm(C)))
        self.lm_head = nn.Linear(C, V, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # nanoGPT's tie

    def forward(self, idx):
        t = idx.shape[1]
        pos = torch.arange(0, t, dtype=torch.long)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for blk in self.transformer.h:
            x = blk(x)
        return self.lm_head(self.transformer.ln_f(x))


model = GPT()
with torch.no_grad():  # wider weights than nanoGPT's init: a stronger test
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.uniform_(-0.2, 0.2)
        elif "ln" in name:
            p.copy_(1.0 + 0.2 * torch.randn_like(p))
        else:
            p.normal_(0.0, 0.3)
for k, v in model.state_dict().items():
    put("w." + k, v)

idx = torch.randint(0, V, (B, S))
tgt = torch.randint(0, V, (B, S))
put("idx", idx)
put("tgt", tgt)
logits = model(idx)
loss = F.cross_entropy(logits.view(-1, V), tgt.view(-1))
put("logits", logits)
put("loss", loss.reshape(1))
loss.backward()
for name, p in model.named_parameters():
    put("g." + name, p.grad)

decay = [p for p in model.parameters() if p.dim() >= 2]
nodecay = [p for p in model.parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                         {"params": nodecay, "weight_decay": 0.0}],
                        lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
opt.step()
for name, p in model.named_parameters():
    put("a." + name, p)

golden.save()
