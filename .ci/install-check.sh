#!/usr/bin/env bash
# Install libnn into a temporary prefix and build a C99 program against it
# with pkg-config; run it under valgrind (no errors, no leaks).
set -euo pipefail
build=${1:-build}
prefix=$(mktemp -d /tmp/libnn-prefix.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
meson configure "$build" -Dprefix="$prefix" >/dev/null
meson install -C "$build" --quiet
pcdir=$(dirname "$(find "$prefix" -name libnn.pc | head -n1)")
# Only libnn's own .pc is visible, as on a machine without zlib1g-dev,
# libpng-dev, libopenmpi-dev...: libnn.pc must not need theirs.
export PKG_CONFIG_LIBDIR="$pcdir" PKG_CONFIG_PATH=
cat > "$prefix/prog.c" <<'C'
#include <nn.h>
#include <stdio.h>
int main(void) {
    int64_t shape[2] = {2, 3};
    nn_tensor *t = nn_tensor_full(NN_DTYPE_F32, shape, 2, 1.5);
    if (!t || nn_tensor_fill(t, 2.0) != NN_OK) { fprintf(stderr, "%s\n", nn_last_error()); return 1; }
    nn_tensor_print(t);
    nn_tensor_free(t);
    printf("libnn %s ok\n", nn_version());
    return 0;
}
C
cc -std=c99 -pedantic -Wall -Werror "$prefix/prog.c" -o "$prefix/prog" $(pkg-config --cflags --libs libnn)
libdir=$(pkg-config --variable=libdir libnn)
if command -v valgrind >/dev/null; then
    LD_LIBRARY_PATH="$libdir" valgrind -q --error-exitcode=1 --leak-check=full "$prefix/prog"
else
    LD_LIBRARY_PATH="$libdir" "$prefix/prog"
fi
meson configure "$build" -Dprefix=/usr/local >/dev/null
echo "install check: ok"
