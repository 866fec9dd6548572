"""The fallback wraps in subprojects/, read by meson's own wrap parser.

Run as `meson runpython check_wraps.py SOURCE_ROOT BUILD_ROOT`, so that this
is the parser and the resolver of the meson that configured the build:
 - every .wrap parses, is a [wrap-file] with a sha256 for its source and its
   WrapDB patch, and names a directory, URLs and file names;
 - every dependency libnn can fall back for (zlib, cmocka, libpng, libjpeg)
   resolves to one of these wraps, as meson's fallback lookup does it;
 - where the system has the package (pkg-config knows it), the build used the
   system one: the wrap's subproject was not configured.
Downloading the WrapDB sources needs network access, so the fallback build
itself is not exercised here.
"""
import json
import os
import re
import subprocess
import sys

from mesonbuild.wrap import wrap

# dependency name asked for in meson.build -> wrap file that provides it
FALLBACKS = {'zlib': 'zlib', 'cmocka': 'cmocka', 'libpng': 'libpng', 'libjpeg': 'libjpeg-turbo'}
SHA256 = re.compile(r'^[0-9a-f]{64}$')


def check_wrap(path):
    errors = []
    pkg = wrap.PackageDefinition(path)  # raises WrapException if unreadable
    if pkg.type != 'file':
        errors.append(f'{pkg.basename}: type {pkg.type!r}, expected a [wrap-file]')
    for what in ('source', 'patch'):
        for key in ('_url', '_filename', '_hash'):
            if what + key not in pkg.values:
                errors.append(f'{pkg.basename}: no {what}{key}')
        digest = pkg.values.get(what + '_hash', '')
        if not SHA256.match(digest):
            errors.append(f'{pkg.basename}: {what}_hash {digest!r} is not a sha256')
        url = pkg.values.get(what + '_url', '')
        if not url.startswith(('http://', 'https://')):
            errors.append(f'{pkg.basename}: {what}_url {url!r}')
    if 'directory' not in pkg.values:
        errors.append(f'{pkg.basename}: no directory')
    return pkg, errors


def main():
    src, build = sys.argv[1], sys.argv[2]
    subdir = os.path.join(src, 'subprojects')
    wraps = sorted(f for f in os.listdir(subdir) if f.endswith('.wrap'))
    errors = []
    for name in wraps:
        pkg, errs = check_wrap(os.path.join(subdir, name))
        errors += errs
        print(f'{name}: {pkg.values.get("directory")}, provides '
              + ', '.join(sorted(d for d in pkg.provided_deps if d != pkg.name) or [pkg.name]))

    resolver = wrap.Resolver(src, 'subprojects', wrap_mode=wrap.WrapMode.nodownload)
    for dep, wrap_name in FALLBACKS.items():
        found, _ = resolver.find_dep_provider(dep)
        if found != wrap_name:
            errors.append(f'dependency {dep!r}: meson finds the fallback {found!r}, expected {wrap_name!r}')

    with open(os.path.join(build, 'meson-info', 'intro-projectinfo.json'), encoding='utf-8') as f:
        used = {p['name'] for p in json.load(f)['subprojects']}
    for dep, wrap_name in FALLBACKS.items():
        system = subprocess.run(['pkg-config', '--exists', dep], check=False).returncode == 0
        path = 'subproject (fallback)' if wrap_name in used else 'system' if system else 'not used'
        print(f'{dep}: {path}')
        if system and wrap_name in used:
            errors.append(f'{dep}: the system has it, yet the build configured subprojects/{wrap_name}')

    for e in errors:
        print('FAIL:', e)
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
