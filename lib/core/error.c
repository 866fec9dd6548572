/* Status strings and the thread-local last error. */
#include "core/core.h"

#include <stdio.h>
#include <string.h>

#define NN__ERRMSG_CAP 512

static _Thread_local nn_status tl_status = NN_OK;
static _Thread_local char tl_message[NN__ERRMSG_CAP];
/* True while the last error is "pending": raised since the last public call
 * that succeeded on this thread. Only a pending error may be reported as the
 * root cause of a NULL argument; tl_status itself stays until cleared. */
static _Thread_local bool tl_pending;

const char *nn_status_string(nn_status status) {
    switch (status) {
    case NN_OK: return "NN_OK: success";
    case NN_ERR_NOMEM: return "NN_ERR_NOMEM: out of memory";
    case NN_ERR_NULL: return "NN_ERR_NULL: a required argument was NULL";
    case NN_ERR_INVALID: return "NN_ERR_INVALID: invalid argument";
    case NN_ERR_SHAPE: return "NN_ERR_SHAPE: incompatible or malformed shape";
    case NN_ERR_DTYPE: return "NN_ERR_DTYPE: unsupported dtype";
    case NN_ERR_OVERFLOW: return "NN_ERR_OVERFLOW: size computation overflows";
    case NN_ERR_RANGE: return "NN_ERR_RANGE: index or dimension out of range";
    case NN_ERR_STATE: return "NN_ERR_STATE: object in the wrong state";
    case NN_ERR_IO: return "NN_ERR_IO: input/output error";
    case NN_ERR_FORMAT: return "NN_ERR_FORMAT: malformed data";
    case NN_ERR_CHECKSUM: return "NN_ERR_CHECKSUM: checksum mismatch";
    case NN_ERR_VERSION: return "NN_ERR_VERSION: unsupported version";
    case NN_ERR_TRUNCATED: return "NN_ERR_TRUNCATED: data ends early";
    case NN_ERR_UNSUPPORTED: return "NN_ERR_UNSUPPORTED: not supported";
    case NN_ERR_NOT_FOUND: return "NN_ERR_NOT_FOUND: not found";
    case NN_ERR_BAD_HANDLE: return "NN_ERR_BAD_HANDLE: freed or invalid handle";
    case NN_ERR_NO_GRAD: return "NN_ERR_NO_GRAD: no gradient";
    case NN_ERR_LIMIT: return "NN_ERR_LIMIT: limit exceeded";
    case NN_ERR_SIGNATURE: return "NN_ERR_SIGNATURE: signature does not verify";
    case NN_ERR_UNSIGNED: return "NN_ERR_UNSIGNED: signature required, none present";
    case NN_ERR_WRONG_KEY: return "NN_ERR_WRONG_KEY: another key or no key";
    case NN_ERR_DECRYPT: return "NN_ERR_DECRYPT: decryption failed, data altered";
    case NN_ERR_TIMEOUT: return "NN_ERR_TIMEOUT: timed out";
    }
    return "unknown nn_status";
}

nn_status nn__err(nn_status status, const char *fmt, ...) {
    tl_status = status;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tl_message, sizeof tl_message, fmt, ap);
    va_end(ap);
    if (n < 0) tl_message[0] = '\0';
    tl_pending = true;
    return status;
}

bool nn__err_pending(void) { return tl_pending; }

void nn__call_ok(void) { tl_pending = false; }

nn_status nn__ok(void) {
    tl_pending = false;
    return NN_OK;
}

nn_status nn__forward(const char *fn) {
    if (tl_pending && tl_status != NN_OK) return tl_status;
    /* A callee failed without recording why: a libnn bug, but the caller
     * still gets a status and a message instead of NN_OK or a stale error. */
    return nn__err(NN_ERR_STATE, "%s: failed without an error message (internal error)", fn);
}

nn_status nn__err_null(const char *fn, const char *name) {
    if (tl_pending && tl_status != NN_OK) return tl_status;
    return nn__err(NN_ERR_NULL, "%s: argument '%s' is NULL", fn, name);
}

const char *nn_last_error(void) { return tl_message; }

nn_status nn_last_status(void) { return tl_status; }

void nn_clear_error(void) {
    tl_status = NN_OK;
    tl_pending = false;
    tl_message[0] = '\0';
}

bool nn__check_ptr(const void *p, const char *fn, const char *name) {
    if (p) return true;
    nn__err_null(fn, name);
    return false;
}

bool nn__check_tensor(const nn_tensor *t, const char *fn, const char *name) {
    if (!t) {
        nn__err_null(fn, name); /* a pending error is the root cause of this NULL */
        return false;
    }
    return nn__handle_check(t, NN__KIND_TENSOR, fn, name);
}
