"""GPT: the nanoGPT model, the byte tokenizer and generation sessions.

    from libnn import gpt
    model = gpt.GPT(vocab_size=256, block_size=128, n_layer=4, n_head=4, n_embd=256)
    logits = model(ids)                       # int64 [B, T] -> [B, T, V]
    libnn.save(model, 'char.nnm')
    s = gpt.Session(libnn.load('char.nnm'), temperature=0.8, top_k=40, seed=1)
    print(gpt.byte_decode(s.generate(gpt.byte_encode('Hello'), max_tokens=100)))
"""
from ctypes import (Structure, byref, c_char, c_double, c_float, c_int32, c_int64, c_uint32,
                    c_uint64, cast)

from . import _decls
from ._lib import check, check_ptr, lib, raise_last
from . import nn as _nn

__all__ = ['GPT', 'Session', 'byte_encode', 'byte_decode']


class _Config(Structure):
    _fields_ = [('struct_size', c_uint32), ('bias', c_int32), ('vocab_size', c_int64),
                ('block_size', c_int64), ('n_layer', c_int64), ('n_head', c_int64),
                ('n_embd', c_int64), ('dropout', c_double), ('tie_weights', c_int32),
                ('reserved', c_int32)]


class _Sampling(Structure):
    _fields_ = [('struct_size', c_uint32), ('top_k', c_int32), ('temperature', c_double),
                ('top_p', c_double), ('seed', c_uint64), ('max_tokens', c_int64)]


_FIELDS = ('vocab_size', 'block_size', 'n_layer', 'n_head', 'n_embd', 'dropout', 'bias',
           'tie_weights')


class GPT(_nn._Builtin):
    """nanoGPT's GPT (state-dict names included); defaults are GPT-2 124M's."""

    def __init__(self, vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768,
                 dropout=0.0, bias=True, tie_weights=True):
        c = _Config()
        check(lib.nn_gpt_config_init(byref(c)))
        for k, v in zip(_FIELDS, (vocab_size, block_size, n_layer, n_head, n_embd, dropout,
                                  bias, tie_weights)):
            setattr(c, k, type(getattr(c, k))(v) if k != 'dropout' else float(v))
        super().__init__(lib.nn_gpt_new(byref(c)), **{k: getattr(c, k) for k in _FIELDS})

    @property
    def config(self):
        """The hyperparameters as a dict (also for a GPT loaded from a file)."""
        c = _Config()
        check(lib.nn_gpt_get_config(self._handle(), byref(c)))
        return {k: getattr(c, k) for k in _FIELDS}


_nn._TYPES['GPT'] = GPT


def byte_encode(text):
    """str (UTF-8) or bytes -> list of token ids 0..255."""
    data = text.encode('utf-8') if isinstance(text, str) else bytes(text)
    n = len(data)
    out = (c_int64 * max(n, 1))()
    got = lib.nn_byte_encode(data, n, out, n)
    if got < 0:
        raise_last()
    return list(out[:got])


def byte_decode(ids):
    """Token ids -> bytes (decode('utf-8', 'replace') for text)."""
    ids = [int(i) for i in ids]
    n = len(ids)
    arr = (c_int64 * max(n, 1))(*ids)
    buf = (c_char * max(n, 1))()
    got = lib.nn_byte_decode(arr, n, buf, n)
    if got < 0:
        raise_last()
    return bytes(buf.raw[:got])


_TOKEN_FN = _decls.nn_token_fn


class Session:
    """One conversation over a loaded GPT (libnn.load(path) or a GPT module,
    which is copied into an immutable model first), with its own KV cache."""

    _h = None

    def __init__(self, model, temperature=0.0, top_k=0, top_p=1.0, seed=0, max_tokens=0):
        from . import io
        if isinstance(model, _nn.Module):
            model = io.load_bytes(io.save_bytes(model))
        self._model = model   # keeps the Python object alive with us
        s = _Sampling()
        check(lib.nn_sampling_init(byref(s)))
        s.temperature, s.top_k, s.top_p = float(temperature), int(top_k), float(top_p)
        s.seed, s.max_tokens = int(seed), int(max_tokens)
        self._cfg = GPT.config.fget(model.module)   # a GPT, else InvalidError
        self._vocab = self._cfg['vocab_size']
        self._h = check_ptr(lib.nn_session_new(model._handle(), byref(s)))

    def _handle(self):
        if not self._h:
            raise ValueError('the Session is closed')
        return self._h

    def append(self, tokens):
        """Run tokens through the model after those cached (prefill / a step)."""
        tokens = [int(t) for t in tokens]
        arr = (c_int64 * max(len(tokens), 1))(*tokens)
        check(lib.nn_session_append(self._handle(), arr, len(tokens)))

    def logits(self):
        """The current next-token logits as a list of floats."""
        out = (c_float * self._vocab)()
        check(lib.nn_session_logits(self._handle(), out, self._vocab))
        return list(out)

    def sample(self):
        """The next token by the session's sampling rules (not appended)."""
        t = c_int64()
        check(lib.nn_session_sample(self._handle(), byref(t)))
        return t.value

    def generate(self, prompt=(), stop=(), max_tokens=None, on_token=None):
        """Append prompt, then generate until a stop token, max_tokens (default:
        the session's setting, else until the cache is full) or on_token(tok)
        returning True. Returns the new tokens."""
        prompt = [int(t) for t in prompt]
        stop = [int(t) for t in stop]
        cap = int(max_tokens) if max_tokens is not None else self.block_size()
        p = (c_int64 * max(len(prompt), 1))(*prompt)
        st = (c_int64 * max(len(stop), 1))(*stop)
        out = (c_int64 * max(cap, 1))()
        n = c_int64()
        errors = []

        def cb(tok, user):
            try:
                return 1 if on_token(int(tok)) else 0
            except BaseException as e:  # never let an exception cross C
                errors.append(e)
                return 1
        fn = _TOKEN_FN(cb) if on_token else cast(None, _TOKEN_FN)
        check(lib.nn_session_generate(self._handle(), p, len(prompt), st, len(stop), out, cap,
                                      byref(n), fn, None))
        if errors:
            raise errors[0]
        return list(out[:n.value])

    def block_size(self):
        return self._cfg['block_size']

    def reset(self):
        check(lib.nn_session_reset(self._handle()))

    def __len__(self):
        n = lib.nn_session_length(self._handle())
        if n < 0:
            raise_last()
        return n

    def close(self):
        h, self._h = self._h, None
        if h:
            lib.nn_session_free(h)

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
