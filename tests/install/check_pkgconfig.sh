#!/bin/sh
# pkg-config files of a build tree, each seen alone (PKG_CONFIG_LIBDIR holds
# only that folder, as on a machine without zlib1g-dev, libpng-dev, ...):
#  - meson-private/libnn.pc, the file `meson install` installs, must resolve
#    without any other .pc file (no Requires.private on libnn's own deps);
#  - meson-uninstalled/libnn-uninstalled.pc must give a working compile line
#    for a C99 program against the build tree (include/ in its Cflags), which
#    then runs with LD_LIBRARY_PATH=BUILD/lib.
# Usage: check_pkgconfig.sh SOURCE_ROOT BUILD_ROOT WORK_DIR CC [CC_ARGS...]
set -eu
src=$1
build=$2
work=$3
shift 3
command -v pkg-config >/dev/null 2>&1 || { echo "pkg-config not installed: skipping"; exit 77; }
rm -rf "$work"
mkdir -p "$work"

echo "== installed libnn.pc, alone"
PKG_CONFIG_LIBDIR="$build/meson-private" PKG_CONFIG_PATH= pkg-config --print-errors --cflags --libs libnn
reqs=$(PKG_CONFIG_LIBDIR="$build/meson-private" PKG_CONFIG_PATH= pkg-config --print-requires-private libnn)
if [ -n "$reqs" ]; then
    echo "libnn.pc has Requires.private: $reqs (libnn is a shared library; they only force -dev packages on users)"
    exit 1
fi

echo "== uninstalled libnn.pc: compile and run a program against the build tree"
flags=$(PKG_CONFIG_LIBDIR="$build/meson-uninstalled" PKG_CONFIG_PATH= pkg-config --print-errors --cflags --libs libnn-uninstalled)
echo "flags: $flags"
version=$(PKG_CONFIG_LIBDIR="$build/meson-uninstalled" PKG_CONFIG_PATH= pkg-config --modversion libnn-uninstalled)
# shellcheck disable=SC2086  # the compiler command and the flags are lists
"$@" -std=c99 -pedantic -Wall -Werror "$src/tests/install/consumer/consumer.c" -o "$work/consumer" $flags
LD_LIBRARY_PATH="$build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$work/consumer" "$version"
rm -rf "$work"
