"""Nothing drifts: the generated declarations match the headers, and the
bound names match the library's exported symbols exactly."""
import os
import re
import shutil
import struct
import subprocess
import sys

from conftest import PKG_ROOT, header_section
from libnn import _decls, _lib, functional


def elf_dynamic_functions(path):
    """Defined global/weak function symbols of an ELF .so, from .dynsym
    (pure Python, used when nm is absent and to cross-check nm)."""
    with open(path, 'rb') as f:
        data = f.read()
    assert data[:4] == b'\x7fELF', 'not an ELF file'
    is64 = data[4] == 2
    end = '<' if data[5] == 1 else '>'
    if is64:
        shoff, = struct.unpack_from(end + 'Q', data, 0x28)
        shentsize, shnum = struct.unpack_from(end + 'HH', data, 0x3A)
        shfmt, symfmt = end + 'IIQQQQIIQQ', end + 'IBBHQQ'
    else:
        shoff, = struct.unpack_from(end + 'I', data, 0x20)
        shentsize, shnum = struct.unpack_from(end + 'HH', data, 0x2E)
        shfmt, symfmt = end + 'IIIIIIIIII', end + 'IIIBBH'
    sections = [struct.unpack_from(shfmt, data, shoff + i * shentsize) for i in range(shnum)]
    names = set()
    for sh in sections:
        if sh[1] != 11:  # SHT_DYNSYM
            continue
        off, size, link, entsize = sh[4], sh[5], sh[6], sh[9]
        stroff = sections[link][4]
        for i in range(size // entsize):
            fields = struct.unpack_from(symfmt, data, off + i * entsize)
            if is64:
                name, info, shndx = fields[0], fields[1], fields[3]
            else:
                name, info, shndx = fields[0], fields[3], fields[5]
            bind, typ = info >> 4, info & 0xF
            if shndx == 0 or bind not in (1, 2) or typ != 2:  # defined GLOBAL/WEAK FUNC
                continue
            e = data.index(b'\0', stroff + name)
            names.add(data[stroff + name:e].decode())
    return names


def nm_dynamic_functions(path):
    out = subprocess.run(['nm', '-D', '--defined-only', path], check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    return {parts[2] for parts in (l.split() for l in out.splitlines())
            if len(parts) == 3 and parts[1] in 'TW'}


def exported_api(path):
    names = nm_dynamic_functions(path) if shutil.which('nm') else elf_dynamic_functions(path)
    return {n for n in names if re.match(r'nn_[a-z]', n)}


def test_generated_declarations_are_current():
    script = os.path.join(PKG_ROOT, 'tools', 'gen_decls.py')
    r = subprocess.run([sys.executable, script, '--check'], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    assert r.returncode == 0, r.stdout


def test_elf_parser_agrees_with_nm():
    if not shutil.which('nm'):
        return
    path = os.path.realpath(_lib.lib_path)
    assert elf_dynamic_functions(path) == nm_dynamic_functions(path)


def test_every_export_is_bound_and_every_binding_exported():
    exported = exported_api(os.path.realpath(_lib.lib_path))
    declared = {f[0] for f in _decls.FUNCTIONS}
    assert exported - declared == set(), 'exported but not declared in the headers'
    assert declared - exported == set(), 'declared in the headers but not exported'
    assert set(_lib.bound_names) == exported
    assert not _lib.missing_names


def test_every_binding_has_types():
    for name, restype, argtypes, argnames, _hdr in _decls.FUNCTIONS:
        if name in _lib.missing_names:
            continue
        fn = getattr(_lib.lib, name)
        assert fn.argtypes is not None and len(fn.argtypes) == len(argnames), name
        assert fn.restype is restype, name


def _ops_section_names():
    text = header_section('Ops', 'Handles used by') + header_section('Losses', 'Optimizers')
    names = re.findall(r'NN_API[^;(]*?\b(nn_\w+)\s*\(', text)
    assert len(names) > 80, 'the header sections moved: found only %s' % names
    return names


def test_functional_covers_every_op():
    missing = []
    for cname in _ops_section_names():
        pyname = functional.C_NAMES.get(cname, cname[3:])
        if not callable(getattr(functional, pyname, None)):
            missing.append(cname)
    assert not missing, 'ops without a libnn.functional wrapper: %s' % missing


# Functions the Pythonic layer deliberately does not call, with the reason.
NOT_WRAPPED = {
    'nn_set_allocator': 'an allocator hook is for C hosts; Python memory is not involved',
    'nn_scope_begin': 'Python objects own their references; scopes are never used',
    'nn_scope_end': 'see nn_scope_begin',
    'nn_tensor_print': 'repr() uses nn_tensor_format',
    'nn_conv2d_new': 'nn.Conv2d uses nn_conv2d_new_ex (a superset)',
    'nn_conv_transpose2d_new': 'nn.ConvTranspose2d uses the _ex form',
    'nn_max_pool2d_new': 'nn.MaxPool2d uses the _ex form',
    'nn_avg_pool2d_new': 'nn.AvgPool2d uses the _ex form',
    'nn_rnn_new': 'nn.RNN uses nn_recurrent_new (every option)',
    'nn_lstm_new': 'nn.LSTM uses nn_recurrent_new (every option)',
    'nn_gru_new': 'nn.GRU uses nn_recurrent_new (every option)',
    'nn_sgd': 'optim.SGD uses nn_optim_new + options',
    'nn_adam': 'optim.Adam uses nn_optim_new + options',
    'nn_adamw': 'optim.AdamW uses nn_optim_new + options',
    'nn_rmsprop': 'optim.RMSprop uses nn_optim_new + options',
    'nn_adagrad': 'optim.Adagrad uses nn_optim_new + options',
}


def test_pythonic_layer_reaches_every_function():
    pkg = os.path.join(PKG_ROOT, 'libnn')
    src = ''.join(open(os.path.join(pkg, f)).read() for f in sorted(os.listdir(pkg))
                  if f.endswith('.py') and f != '_decls.py')
    unused = [f[0] for f in _decls.FUNCTIONS
              if f[0] not in NOT_WRAPPED and not re.search(r'\b%s\b' % f[0], src)]
    assert not unused, 'C functions no Python API calls: %s' % unused
    stale = [n for n in NOT_WRAPPED if n not in {f[0] for f in _decls.FUNCTIONS}]
    assert not stale, 'NOT_WRAPPED lists functions the headers no longer declare: %s' % stale
