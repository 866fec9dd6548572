"""GPT from Python: build, train a step, save/load, tokenizer, sessions."""
import threading

import pytest

import libnn
from libnn import gpt, nn, optim
from libnn import functional as F
from conftest import needs

pytestmark = needs('nn_gpt_new', 'nn_session_new')


def tiny(**kw):
    libnn.manual_seed(7)
    args = dict(vocab_size=256, block_size=32, n_layer=2, n_head=2, n_embd=16)
    args.update(kw)
    return gpt.GPT(**args)


def test_config_and_state_dict_names():
    m = tiny(bias=False)
    assert m.config == {'vocab_size': 256, 'block_size': 32, 'n_layer': 2, 'n_head': 2,
                        'n_embd': 16, 'dropout': 0.0, 'bias': 0, 'tie_weights': 1}
    names = list(m.state_dict().keys())
    assert names[0] == 'transformer.wte.weight'
    assert 'transformer.h.1.attn.c_attn.weight' in names
    assert 'transformer.ln_f.bias' not in names
    assert names[-1] == 'lm_head.weight'


def test_train_step_lowers_loss_and_round_trips():
    m = tiny()
    ids = libnn.tensor([[(i * 7 + j) % 256 for j in range(16)] for i in range(2)],
                       dtype=libnn.int64)
    x, y = ids[:, :-1], ids[:, 1:]
    opt = optim.AdamW(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        logits = m(x)
        loss = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    m.eval()
    model = libnn.load_bytes(libnn.save_bytes(m))
    assert isinstance(model.module, gpt.GPT)
    with libnn.no_grad():
        assert model(x).tolist() == m(x).tolist()


def test_bytes_round_trip():
    text = 'héllo, wörld\n'
    ids = gpt.byte_encode(text)
    assert len(ids) == len(text.encode())
    assert gpt.byte_decode(ids).decode() == text
    with pytest.raises(libnn.LibnnError, match='not a byte'):
        gpt.byte_decode([300])


def test_session_matches_recompute_and_streams():
    model = libnn.load_bytes(libnn.save_bytes(tiny().eval()))
    prompt = gpt.byte_encode('abc')
    with gpt.Session(model) as s:
        s.append(prompt)
        full = model(libnn.tensor([prompt], dtype=libnn.int64)).tolist()[0][-1]
        assert max(abs(a - b) for a, b in zip(s.logits(), full)) < 1e-5
        s.reset()
        seen = []
        out = s.generate(prompt, max_tokens=5, on_token=seen.append)
        assert out == seen and len(out) == 5
        assert len(s) == 8


def test_sessions_on_threads_equal_serial():
    model = libnn.load_bytes(libnn.save_bytes(tiny().eval()))

    def run(seed):
        with gpt.Session(model, temperature=1.0, top_k=20, top_p=0.9, seed=seed) as s:
            return s.generate(gpt.byte_encode('x'), max_tokens=12)
    want = [run(i) for i in range(4)]
    got = [None] * 4

    def worker(i):
        got[i] = run(i)
    th = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    assert got == want


def test_errors():
    with pytest.raises(libnn.LibnnError, match='not divisible by n_head'):
        gpt.GPT(vocab_size=10, block_size=8, n_layer=1, n_head=3, n_embd=16)
    with pytest.raises(libnn.LibnnError, match='not a GPT'):
        gpt.Session(nn.Linear(2, 2))
    s = gpt.Session(tiny())
    with pytest.raises(libnn.LibnnError, match='outside the vocabulary'):
        s.append([256])
