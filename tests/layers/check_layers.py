#!/usr/bin/env python3
"""Check libnn's layering rule (README, Design: "Layers of the tree").

    check_layers.py LIBDIR [ARCHIVE]

LIBDIR is the source folder lib/. Three checks:
  1. every #include "..." of a file under lib/<folder>/ names a header of
     its own folder, of a folder it may use (USES below), or a shared one;
     and the headers only some places may include (blis.h, SIMD intrinsics,
     mpi.h) appear only there;
  2. with ARCHIVE (the internal static library, libnn_impl.a): no object of
     a folder references a symbol defined by a folder it may not use (read
     with nm), so the call graph between folders has no cycle;
  3. no two headers under lib/ share an include guard.
Exits 1 listing every violation, 0 otherwise. Standard library only.
"""
import os
import re
import shutil
import subprocess
import sys

# Which folders each folder of lib/ may include and call, lowest layer first.
# Anything not listed is forbidden; a new folder must be added here.
USES = {
    'core': set(),
    'backend': {'core'},
    'tensor': {'core'},
    'autograd': {'core', 'tensor'},
    'ops': {'core', 'tensor', 'autograd', 'backend'},
    'loss': {'core', 'tensor', 'autograd', 'ops'},
    'module': {'core', 'tensor', 'autograd', 'ops', 'loss'},
    'optim': {'core', 'tensor', 'autograd', 'ops', 'backend', 'module'},
    'data': {'core', 'tensor', 'autograd', 'ops'},
    'io': {'core', 'tensor', 'autograd', 'ops', 'module', 'optim'},
    'dist': {'core', 'tensor', 'autograd', 'ops', 'module', 'data'},
    'train': {'core', 'tensor', 'autograd', 'ops', 'loss', 'module', 'optim', 'data'},
    'quant': {'core', 'tensor', 'autograd', 'ops', 'backend', 'module', 'data'},
    'onnx': {'core', 'tensor', 'autograd', 'ops', 'loss', 'module', 'io'},
    'generate': {'core', 'tensor', 'autograd', 'ops', 'backend', 'module', 'io'},
}

# Headers outside the folders: the public header, the generated build
# configuration, and lib/nn_internal.h (the declarations of core, tensor and
# autograd shared by every folder above core).
SHARED = {'nn.h': None, 'nn_config.h': None, 'nn_internal.h': set(USES) - {'core', 'backend'}}
# Generated headers that live in the build tree, by the folder that owns them.
GENERATED = {'backend/nn_backend_config.h': 'backend', 'onnx/nn_onnx_config.h': 'onnx',
             'onnx/onnx.pb-c.h': 'onnx', 'io/nn_io_config.h': 'io',
             'train/nn_train_config.h': 'train'}

# System headers only some places may include (path prefix under lib/).
RESTRICTED = [
    (re.compile(r'^(blis\.h|cblas\.h)$'), ('backend/',), 'BLIS is reached only through the backend'),
    (re.compile(r'intrin\.h$|^arm_neon\.h$|^cpuid\.h$'), ('backend/',),
     'SIMD intrinsics live only in the backend'),
    (re.compile(r'^mpi\.h$'), ('dist/dist_mpi.c',), 'mpi.h is included by dist/dist_mpi.c only'),
]

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def sources(libdir):
    for root, _, files in os.walk(libdir):
        for f in sorted(files):
            if f.endswith(('.c', '.h')):
                yield os.path.join(root, f)


def folder_of(rel):
    """'ops/view.c' -> 'ops'; 'nn_internal.h' -> None (lib/ itself)."""
    parts = rel.split('/')
    return parts[0] if len(parts) > 1 else None


def check_includes(libdir, errors):
    for path in sources(libdir):
        rel = os.path.relpath(path, libdir)
        own = folder_of(rel)
        text = open(path, encoding='utf-8', errors='replace').read()
        for kind, name in INCLUDE.findall(text):
            line = text[:text.find(name)].count('\n') + 1
            where = f'lib/{rel}:{line}'
            if kind == '<':
                for pat, allowed, why in RESTRICTED:
                    if pat.search(name) and not rel.startswith(allowed):
                        errors.append(f'{where}: includes <{name}>: {why}')
                continue
            if own is None:  # a shared header at lib/: may use shared and core/ headers
                if name not in SHARED and not name.startswith('core/'):
                    errors.append(f'{where}: lib/{rel} is shared by all folders and may not '
                                  f'include "{name}"')
                continue
            if own not in USES:
                errors.append(f'{where}: folder lib/{own}/ is not in the layering rule '
                              f'(tests/layers/check_layers.py USES, README "Layers of the tree")')
                continue
            if name in GENERATED:
                target = GENERATED[name]
            elif os.path.exists(os.path.join(os.path.dirname(path), name)):
                target = own  # next to the including file
            elif '/' in name and os.path.exists(os.path.join(libdir, name)):
                target = folder_of(name)
            elif name in SHARED:
                users = SHARED[name]
                if users is not None and own not in users:
                    errors.append(f'{where}: lib/{own}/ may not include "{name}" (it declares '
                                  f'layers above {own}); include the core/ headers it needs')
                continue
            else:
                errors.append(f'{where}: cannot resolve #include "{name}"')
                continue
            if target != own and target not in USES[own]:
                errors.append(f'{where}: lib/{own}/ may not include "{name}" (lib/{target}/ '
                              f'is not below it)')


def member_folder(member, builddir_lib, libdir):
    """Folder of lib/ an archive member was compiled from: objects of lib/X's
    own static libraries sit under <build>/lib/X/ (thin archives name them by
    path); the main archive's objects are named <folder>_<file>.c.o, and a
    subfolder's (x86_avx2_gemm.c.o) by the subfolder, found under lib/."""
    d = os.path.dirname(member)
    if d:
        sub = os.path.relpath(os.path.dirname(os.path.abspath(d)), builddir_lib)
        if sub not in ('.', '') and not sub.startswith('..'):
            return sub.split('/')[0]
    first = os.path.basename(member).split('_')[0]
    if first not in USES:
        for folder in USES:
            if os.path.isdir(os.path.join(libdir, folder, first)):
                return folder
    return first


def check_calls(archive, libdir, errors):
    nm = shutil.which('nm')
    if not nm:
        print('nm not found: call check skipped')
        return
    out = subprocess.run([nm, '-A', archive], capture_output=True, text=True)
    if out.returncode != 0:
        errors.append(f'nm {archive} failed: {out.stderr.strip()}')
        return
    builddir_lib = os.path.dirname(os.path.abspath(archive))
    defined, used = {}, []
    for line in out.stdout.splitlines():
        m = re.match(r'^(.*?):(.*?\.o):\s*(?:[0-9a-fA-F]+)?\s+([A-Za-z])\s+(\S+)$', line)
        if not m:
            continue
        member, kind, sym = m.group(2), m.group(3), m.group(4)
        folder = member_folder(member, builddir_lib, libdir)
        if kind in 'TDBRVWC':
            defined[sym] = folder
        elif kind == 'U':
            used.append((folder, member, sym))
    seen = set()
    for folder, member, sym in used:
        target = defined.get(sym)
        if target is None or target == folder:
            continue
        if folder not in USES:
            errors.append(f'{os.path.basename(member)}: folder {folder} is not in the layering rule')
        elif target not in USES[folder] and (folder, target, sym) not in seen:
            seen.add((folder, target, sym))
            errors.append(f'{os.path.basename(member)} (lib/{folder}/) calls {sym} of lib/{target}/, '
                          f'which is not below it')


def check_guards(libdir, errors):
    guards = {}
    for path in sources(libdir):
        if not path.endswith('.h'):
            continue
        m = re.search(r'^\s*#\s*ifndef\s+(\w+)\s*\n\s*#\s*define\s+\1\b',
                      open(path, encoding='utf-8', errors='replace').read(), re.M)
        if not m:
            continue
        rel = 'lib/' + os.path.relpath(path, libdir)
        if m.group(1) in guards:
            errors.append(f'{rel}: include guard {m.group(1)} is also used by {guards[m.group(1)]}')
        else:
            guards[m.group(1)] = rel


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__)
        return 2
    libdir = argv[1]
    errors = []
    check_includes(libdir, errors)
    if len(argv) == 3:
        check_calls(argv[2], libdir, errors)
    check_guards(libdir, errors)
    for e in errors:
        print(e)
    if errors:
        print(f'{len(errors)} layering violation(s); the rule is in README "Layers of the tree"')
        return 1
    print('layering rule holds')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
