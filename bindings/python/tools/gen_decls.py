#!/usr/bin/env python3
"""Generate libnn/_decls.py (ctypes declarations) from the public C headers.

Run from anywhere:  python3 bindings/python/tools/gen_decls.py [--check]

The headers follow a regular style, which this parser relies on:
  * functions:      NN_API <type> <name>(<args>);        (possibly over lines)
  * callbacks:      typedef <type> (*<name>)(<args>);
  * enums:          typedef enum <name> { NN_X = <int>, ... } <name>;
  * opaque handles: typedef struct <name> <name>;
  * constants:      #define NN_<NAME> <int>
Anything it cannot map fails loudly, so a new header construct is noticed
the moment it lands instead of turning into a wrong ctypes signature.
--check exits 1 when the committed file is out of date (used by the tests).
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.normpath(os.path.join(HERE, '..'))
ROOT = os.path.normpath(os.path.join(PKG, '..', '..'))
OUT = os.path.join(PKG, 'libnn', '_decls.py')

SCALARS = {
    'void': None, 'bool': 'c_bool', '_Bool': 'c_bool', 'char': 'c_char',
    'int': 'c_int', 'unsigned': 'c_uint', 'unsigned int': 'c_uint', 'long': 'c_long',
    'unsigned long': 'c_ulong', 'float': 'c_float', 'double': 'c_double',
    'size_t': 'c_size_t', 'int8_t': 'c_int8', 'uint8_t': 'c_uint8',
    'int16_t': 'c_int16', 'uint16_t': 'c_uint16', 'int32_t': 'c_int32',
    'uint32_t': 'c_uint32', 'int64_t': 'c_int64', 'uint64_t': 'c_uint64',
}


class Header:
    def __init__(self):
        self.enums = {}       # enum type name -> [(const, value)]
        self.handles = []     # opaque struct typedef names
        self.records = []     # structs with a public layout (passed by address)
        self.callbacks = {}   # typedef name -> (ret, [(type, name)])
        self.functions = []   # (name, ret, [(type, name)], header file)
        self.defines = {}     # NN_* integer constants


def strip_comments(text):
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    return re.sub(r'//[^\n]*', ' ', text)


def header_files():
    inc = os.path.join(ROOT, 'include')
    files = [os.path.join(inc, 'nn.h')]
    files += sorted(os.path.join(inc, f) for f in os.listdir(inc)
                    if f.startswith('nn_part_') and f.endswith('.h'))
    return files


def split_args(args):
    """Split a C parameter list at top-level commas."""
    out, depth, cur = [], 0, ''
    for ch in args:
        if ch in '([':
            depth += 1
        elif ch in ')]':
            depth -= 1
        if ch == ',' and depth == 0:
            out.append(cur.strip())
            cur = ''
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    if out == ['void']:
        return []
    return out


def split_param(p):
    """'const int64_t *shape' -> ('const int64_t *', 'shape');
    arrays ('uint64_t state[4]') become pointers; inline function pointers
    ('void (*fn)(void *)') become 'fnptr'."""
    p = ' '.join(p.split())
    m = re.match(r'^(.*)\(\s*\*\s*(\w+)\s*\)\s*\(.*\)$', p)
    if m:
        return 'fnptr', m.group(2)
    m = re.match(r'^(.*?)(\w+)\s*\[\s*\w*\s*\]$', p)
    if m:
        return m.group(1).strip() + ' *', m.group(2)
    m = re.match(r'^(.*?[\s\*])(\w+)$', p)
    if not m:   # unnamed parameter
        return p, ''
    base = m.group(1).strip()
    if base in ('', 'const', 'unsigned', 'signed', 'struct', 'enum'):
        return p, ''
    return base, m.group(2)


def parse(files):
    h = Header()
    for path in files:
        text = strip_comments(open(path, encoding='utf-8').read())
        for m in re.finditer(r'^\s*#\s*define\s+(NN_[A-Z0-9_]+)\s+\(?(-?\d+)\)?\s*$',
                             text, flags=re.M):
            h.defines[m.group(1)] = int(m.group(2))
        text = re.sub(r'^\s*#.*$', ' ', text, flags=re.M)
        for m in re.finditer(r'typedef\s+enum\s*(\w*)\s*\{(.*?)\}\s*(\w+)\s*;', text, re.S):
            consts, nxt = [], 0
            for item in m.group(2).split(','):
                item = item.strip()
                if not item:
                    continue
                if '=' in item:
                    k, v = (s.strip() for s in item.split('=', 1))
                    nxt = int(v, 0)
                else:
                    k = item
                consts.append((k, nxt))
                nxt += 1
            h.enums[m.group(3)] = consts
        for m in re.finditer(r'typedef\s+struct\s+(\w+)\s+(\w+)\s*;', text):
            h.handles.append(m.group(2))
        # Versioned option structs (typedef struct x { ... } x;): passed by
        # pointer as c_void_p; the Pythonic layer defines their Structure.
        for m in re.finditer(r'typedef\s+struct\s+(\w+)\s*\{[^{}]*\}\s*(\w+)\s*;', text):
            h.handles.append(m.group(2))
        for m in re.finditer(r'typedef\s+([^;{}()]+?)\(\s*\*\s*(\w+)\s*\)\s*\(([^;]*?)\)\s*;',
                             text, re.S):
            h.callbacks[m.group(2)] = (' '.join(m.group(1).split()),
                                       [split_param(a) for a in split_args(m.group(3))])
        for m in re.finditer(r'\bNN_API\s+([^;{}]+?)\b(nn_\w+)\s*\(([^;{}]*?)\)\s*;', text, re.S):
            ret = ' '.join(m.group(1).split())
            params = [split_param(a) for a in split_args(m.group(3))]
            h.functions.append((m.group(2), ret, params, os.path.basename(path)))
    return h


def ctype(h, ctext, role, where):
    """Map a C type to the text of a ctypes type. role: 'ret' or 'arg'."""
    t = ctext.replace('const', ' ')
    stars = t.count('*')
    base = ' '.join(t.replace('*', ' ').split())
    base = re.sub(r'^(struct|enum)\s+', '', base)
    if ctext == 'fnptr':
        return 'c_void_p'
    if stars == 0:
        if base in h.callbacks:
            return base
        if base in h.enums:
            return 'c_int'
        if base in SCALARS:
            return SCALARS[base]
        raise SystemExit('gen_decls: %s: cannot map type %r' % (where, ctext))
    if stars == 1:
        if base == 'char':
            # const char * in: text; const char * out: borrowed text.
            # char * out (no const): owned by the caller, freed with nn_free.
            if role == 'ret' and 'const' not in ctext:
                return 'c_void_p'
            return 'c_char_p'
        if base == 'void' or base in h.handles or base in h.callbacks or base in h.records:
            return 'c_void_p'
        if base in h.enums:
            return 'POINTER(c_int)'
        if base in SCALARS and SCALARS[base]:
            return 'POINTER(%s)' % SCALARS[base]
        raise SystemExit('gen_decls: %s: cannot map type %r' % (where, ctext))
    if stars == 2:
        if base == 'char':
            return 'POINTER(c_char_p)' if ctext.count('const') else 'POINTER(c_void_p)'
        if base == 'void' or base in h.handles:
            return 'POINTER(c_void_p)'
        if base in SCALARS and SCALARS[base]:
            return 'POINTER(POINTER(%s))' % SCALARS[base]
    if stars >= 3:
        # char ***argv and the like: pointers to pointers to the 2-star type.
        inner = ctype(h, base + ' ' + '*' * 2, role, where)
        return 'POINTER(' * (stars - 2) + inner + ')' * (stars - 2)
    raise SystemExit('gen_decls: %s: cannot map type %r' % (where, ctext))


def render(h):
    lines = [
        '',
        '# Integer constants (#define NN_*).',
        'DEFINES = {',
    ]
    for k in sorted(h.defines):
        lines.append('    %r: %d,' % (k, h.defines[k]))
    lines += ['}', '', '# Enums: type name -> ((constant, value), ...), in header order.',
              'ENUMS = {']
    for name, consts in h.enums.items():
        lines.append('    %r: (' % name)
        for k, v in consts:
            lines.append('        (%r, %d),' % (k, v))
        lines.append('    ),')
    lines += ['}', '', '# Opaque handle types (passed as c_void_p).', 'HANDLES = (']
    lines += ['    %r,' % n for n in h.handles]
    lines += [')', '', '# Callback types.']
    for name, (ret, params) in h.callbacks.items():
        where = 'typedef ' + name
        args = [ctype(h, t, 'arg', where) for t, _ in params]
        r = ctype(h, ret, 'ret', where) if ret != 'void' else 'None'
        lines.append('%s = CFUNCTYPE(%s)' % (name, ', '.join([r] + args)))
    lines += ['CALLBACKS = {%s}' % ', '.join('%r: %s' % (n, n) for n in h.callbacks), '',
              '# Functions: (name, restype, argtypes, argnames, header).', 'FUNCTIONS = (']
    seen = set()
    for name, ret, params, hdr in h.functions:
        if name in seen:
            raise SystemExit('gen_decls: %s declared twice' % name)
        seen.add(name)
        r = 'None' if ret == 'void' else ctype(h, ret, 'ret', name)
        args = [ctype(h, t, 'arg', name) for t, _ in params]
        names = tuple(n for _, n in params)
        lines.append('    (%r, %s, (%s), %r, %r),' % (
            name, r, ''.join(a + ', ' for a in args), names, hdr))
    lines += [')', '']
    body = '\n'.join(lines)
    code = re.sub(r"'[^']*'", "''", body)   # names, not parameter-name strings
    used = sorted(set(re.findall(r'\b(CFUNCTYPE|POINTER|c_[a-z0-9_]+)\b', code)))
    head = ['# Generated by tools/gen_decls.py from include/nn.h (+ any nn_part_*.h).',
            '# Do not edit: rerun the script when the headers change (a test checks it).',
            'from ctypes import (']
    line = '   '
    for name in used:
        if len(line) + len(name) + 2 > 92:
            head.append(line)
            line = '   '
        line += ' %s,' % name
    head += [line, ')']
    return '\n'.join(head) + '\n' + body


def main():
    text = render(parse(header_files()))
    if '--check' in sys.argv:
        old = open(OUT, encoding='utf-8').read() if os.path.exists(OUT) else ''
        if old != text:
            print('gen_decls: %s is out of date; rerun tools/gen_decls.py' % OUT)
            return 1
        return 0
    with open(OUT, 'w', encoding='utf-8') as f:
        f.write(text)
    print('gen_decls: wrote %s' % OUT)
    return 0


if __name__ == '__main__':
    sys.exit(main())
