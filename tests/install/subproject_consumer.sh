#!/bin/sh
# Build tests/install/consumer, a separate meson project, with this source
# tree as its subprojects/libnn, then run it: proves that libnn works as a
# meson subproject (meson.override_dependency('libnn', ...)).
# Usage: subproject_consumer.sh SOURCE_ROOT WORK_DIR
set -eu
src=$1
work=$2
command -v meson >/dev/null 2>&1 || { echo "meson not on PATH: skipping"; exit 77; }
command -v ninja >/dev/null 2>&1 || { echo "ninja not on PATH: skipping"; exit 77; }
rm -rf "$work"
mkdir -p "$work/project/subprojects"
cp "$src/tests/install/consumer/meson.build" "$src/tests/install/consumer/consumer.c" "$work/project/"
# A symlink, as a developer would point subprojects/libnn at a checkout.
ln -s "$(cd "$src" && pwd)" "$work/project/subprojects/libnn"
# -Dlibnn:optimization=0 only to keep the extra build short; no downloads:
# libnn's own dependencies must come from the system here.
meson setup "$work/build" "$work/project" --wrap-mode=nodownload \
    --force-fallback-for=libnn -Dlibnn:optimization=0
meson introspect --projectinfo "$work/build" | grep -q '"name": "libnn"' ||
    { echo "libnn was not configured as a subproject"; exit 1; }
ninja -C "$work/build"
# The consumer's own test runs it with the version meson saw for libnn_dep.
meson test -C "$work/build" --print-errorlogs consumer
rm -rf "$work"
