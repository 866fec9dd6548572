"""Signed and encrypted model files (Ed25519 signatures, XChaCha20-Poly1305
encryption at rest; libsodium). Keys are bytes:

    from libnn import sealed
    public, secret = sealed.sign_keypair()          # or sign_keypair(seed=32 bytes)
    key = sealed.encrypt_keygen()
    sealed.save(net, 'model.nnm', sign_key=secret, encrypt_key=key)
    model = sealed.load('model.nnm', verify_key=public, encrypt_key=key)

A tampered file raises SignatureError / DecryptError, a truncated one
TruncatedError, another key WrongKeyError, an unsigned file when
require_signature (the default when a verify_key is given) UnsignedError.
Without libsodium in the build every call raises UnsupportedError.
"""
import ctypes
from ctypes import byref, c_int64, c_size_t, c_uint8, c_void_p

from . import _decls
from ._lib import check, check_ptr, lib
from .io import Model, _b, _take_buffer

__all__ = ['sign_keypair', 'encrypt_keygen', 'save', 'save_bytes', 'load', 'load_bytes',
           'load_checkpoint_bytes', 'SIGN_PUBLIC_KEY_BYTES', 'SIGN_SECRET_KEY_BYTES',
           'ENCRYPT_KEY_BYTES']

SIGN_SEED_BYTES = _decls.DEFINES['NN_SIGN_SEED_BYTES']
SIGN_PUBLIC_KEY_BYTES = _decls.DEFINES['NN_SIGN_PUBLIC_KEY_BYTES']
SIGN_SECRET_KEY_BYTES = _decls.DEFINES['NN_SIGN_SECRET_KEY_BYTES']
ENCRYPT_KEY_BYTES = _decls.DEFINES['NN_ENCRYPT_KEY_BYTES']
_REQUIRE = dict(_decls.ENUMS['nn_io_option'])['NN_IO_OPTION_REQUIRE_SIGNATURE']
_COMPRESSION = dict(_decls.ENUMS['nn_io_option'])['NN_IO_OPTION_COMPRESSION']


def _buf(data):
    """A ctypes copy of data (bytes-like), or (None, 0)."""
    if data is None:
        return None, 0
    data = bytes(data)
    return (c_uint8 * max(len(data), 1)).from_buffer_copy(data.ljust(1, b'\0')), len(data)


def _wipe(arr):
    if arr is not None:
        ctypes.memset(arr, 0, ctypes.sizeof(arr))


def sign_keypair(seed=None):
    """A new Ed25519 key pair (public 32 bytes, secret 64 bytes); derived
    from a 32-byte seed when given, else random."""
    s, n = _buf(seed)
    pk, sk = (c_uint8 * SIGN_PUBLIC_KEY_BYTES)(), (c_uint8 * SIGN_SECRET_KEY_BYTES)()
    try:
        check(lib.nn_sign_keypair(s, n, pk, SIGN_PUBLIC_KEY_BYTES, sk, SIGN_SECRET_KEY_BYTES))
        return bytes(pk), bytes(sk)
    finally:
        _wipe(s)
        _wipe(sk)


def encrypt_keygen():
    """A new random 32-byte encryption key."""
    k = (c_uint8 * ENCRYPT_KEY_BYTES)()
    try:
        check(lib.nn_encrypt_keygen(k, ENCRYPT_KEY_BYTES))
        return bytes(k)
    finally:
        _wipe(k)


class _KeyOptions:
    """An nn_io_options holding keys (its copies are wiped when freed)."""

    def __init__(self, sign_key=None, verify_key=None, encrypt_key=None,
                 require_signature=None, compression=None, max_bytes=None):
        if require_signature is None:
            require_signature = verify_key is not None
        self.args = (sign_key, verify_key, encrypt_key, require_signature, compression)
        self.max_bytes = max_bytes
        self.h = None

    def __enter__(self):
        sign_key, verify_key, encrypt_key, require, compression = self.args
        self.h = check_ptr(lib.nn_io_options_new())
        try:
            for fn, key in ((lib.nn_io_options_set_sign_key, sign_key),
                            (lib.nn_io_options_set_verify_key, verify_key),
                            (lib.nn_io_options_set_encrypt_key, encrypt_key)):
                if key is not None:
                    b, n = _buf(key)
                    try:
                        check(fn(self.h, b, n))
                    finally:
                        _wipe(b)
            check(lib.nn_io_options_set(self.h, _REQUIRE, 1 if require else 0))
            if compression is not None:
                check(lib.nn_io_options_set(self.h, _COMPRESSION, int(compression)))
            if self.max_bytes is not None:
                from .io import _IO
                check(lib.nn_io_options_set(self.h, _IO['max_bytes'], int(self.max_bytes)))
        except BaseException:
            lib.nn_io_options_free(self.h)
            raise
        return self.h

    def __exit__(self, *exc):
        lib.nn_io_options_free(self.h)
        return False


def save(module, path, sign_key=None, encrypt_key=None, compression=None):
    """Save a module atomically, signed with sign_key (64 bytes) and/or
    encrypted with encrypt_key (32 bytes)."""
    with _KeyOptions(sign_key=sign_key, encrypt_key=encrypt_key, compression=compression) as o:
        check(lib.nn_model_save(module._handle(), _b(path), None, o))


def save_bytes(module, sign_key=None, encrypt_key=None, compression=None):
    data, size = c_void_p(), c_size_t()
    with _KeyOptions(sign_key=sign_key, encrypt_key=encrypt_key, compression=compression) as o:
        check(lib.nn_model_save_buffer(module._handle(), None, o, byref(data), byref(size)))
    return _take_buffer(data, size)


def load(path, verify_key=None, encrypt_key=None, require_signature=None, max_bytes=None):
    """Load a model file, decrypting with encrypt_key and verifying against
    verify_key (a signature is then required unless require_signature=False)."""
    with _KeyOptions(verify_key=verify_key, encrypt_key=encrypt_key,
                     require_signature=require_signature, max_bytes=max_bytes) as o:
        return Model(lib.nn_model_load(_b(path), o))


def load_bytes(data, verify_key=None, encrypt_key=None, require_signature=None):
    data = bytes(data)
    with _KeyOptions(verify_key=verify_key, encrypt_key=encrypt_key,
                     require_signature=require_signature) as o:
        return Model(lib.nn_model_load_buffer(data, len(data), o))


def load_checkpoint_bytes(data, module, optimizer, verify_key=None, encrypt_key=None,
                          require_signature=None):
    """Resume from a signed / encrypted checkpoint in memory; returns (epoch, step)."""
    data = bytes(data)
    epoch, step = c_int64(), c_int64()
    with _KeyOptions(verify_key=verify_key, encrypt_key=encrypt_key,
                     require_signature=require_signature) as o:
        check(lib.nn_checkpoint_load_buffer(data, len(data), module._handle(),
                                            optimizer._handle(), None, None, byref(epoch),
                                            byref(step), o))
    return epoch.value, step.value
