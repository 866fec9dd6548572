"""Signed and encrypted model files from Python: round trips, tampering,
wrong keys, a committed test vector (tests/io/sealed)."""
import os

import pytest

import libnn
from libnn import nn, optim, sealed
from conftest import PKG_ROOT, needs

pytestmark = needs('nn_sign_keypair', 'nn_model_save')


def _have_sodium():
    try:
        sealed.encrypt_keygen()
        return True
    except libnn.UnsupportedError:
        return False


sodium = pytest.mark.skipif(not _have_sodium(), reason='libnn built without libsodium')
SEED = bytes(range(32))
KEY = bytes(range(0x40, 0x60))


def net():
    libnn.manual_seed(5)
    return nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))


def same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].tolist() == sb[k].tolist(), k


@sodium
def test_round_trip_signed_and_encrypted(tmp_path):
    pk, sk = sealed.sign_keypair()
    key = sealed.encrypt_keygen()
    m = net()
    path = str(tmp_path / 'm.nnm')
    sealed.save(m, path, sign_key=sk, encrypt_key=key)
    with sealed.load(path, verify_key=pk, encrypt_key=key) as back:
        same(m, back.module)
    data = sealed.save_bytes(m, sign_key=sk)
    with sealed.load_bytes(data, verify_key=pk) as back:
        same(m, back.module)


@sodium
def test_every_failure_has_its_error():
    pk, sk = sealed.sign_keypair()
    other_pk, _ = sealed.sign_keypair()
    key = sealed.encrypt_keygen()
    m = net()
    signed = bytearray(sealed.save_bytes(m, sign_key=sk))
    with pytest.raises(libnn.WrongKeyError):
        sealed.load_bytes(signed, verify_key=other_pk)
    flipped = bytearray(signed)
    flipped[len(flipped) // 2] ^= 1
    with pytest.raises(libnn.SignatureError):
        sealed.load_bytes(flipped, verify_key=pk)
    with pytest.raises(libnn.TruncatedError):
        sealed.load_bytes(signed[:-10], verify_key=pk)
    with pytest.raises(libnn.UnsignedError):
        sealed.load_bytes(libnn.save_bytes(m), verify_key=pk)
    enc = bytearray(sealed.save_bytes(m, encrypt_key=key))
    with pytest.raises(libnn.WrongKeyError):
        sealed.load_bytes(enc, encrypt_key=sealed.encrypt_keygen())
    with pytest.raises(libnn.WrongKeyError):
        libnn.load_bytes(enc)
    enc[-5] ^= 0x80
    with pytest.raises(libnn.DecryptError):
        sealed.load_bytes(enc, encrypt_key=key)


@sodium
def test_checkpoint_round_trip():
    m = net()
    opt = optim.Adam(m.parameters(), lr=1e-3)
    key = sealed.encrypt_keygen()
    data = libnn.io.save_bytes(m, optimizer=opt, epoch=4, step=40)
    # Python's save_bytes has no keys: encrypt through sealed's options.
    del data
    with sealed._KeyOptions(encrypt_key=key) as o:
        from ctypes import byref, c_size_t, c_void_p
        from libnn._lib import check, lib
        from libnn.io import _take_buffer
        check(lib.nn_io_options_set_training(o, opt._handle(), None, None, 4, 40))
        d, n = c_void_p(), c_size_t()
        check(lib.nn_model_save_buffer(m._handle(), None, o, byref(d), byref(n)))
        data = _take_buffer(d, n)
    m2 = net()
    opt2 = optim.Adam(m2.parameters(), lr=1e-3)
    assert sealed.load_checkpoint_bytes(data, m2, opt2, encrypt_key=key) == (4, 40)
    same(m, m2)


@sodium
def test_committed_vector_verifies():
    pk, _ = sealed.sign_keypair(seed=SEED)
    path = os.path.join(PKG_ROOT, '..', '..', 'tests', 'io', 'sealed', 'signed_encrypted_linear.nnm')
    with sealed.load(path, verify_key=pk, encrypt_key=KEY) as m:
        w = m.module.state_dict()['0.weight'].tolist()
    assert w == [[-1.0, -0.75, -0.5], [-0.25, 0.0, 0.25]]


def test_key_sizes_checked():
    if not _have_sodium():
        with pytest.raises(libnn.UnsupportedError):
            sealed.sign_keypair()
        return
    with pytest.raises(ValueError):
        sealed.sign_keypair(seed=b'short')
    with pytest.raises(ValueError):
        sealed.save_bytes(net(), sign_key=b'x' * 63)
