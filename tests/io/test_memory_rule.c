/* The loaders' memory rule, enforced by the kernel: a load may use at most
 * 1.25 x the bytes it returns + 16 MiB (for a rejected file: 16 MiB).
 *
 * Each case runs in a child process whose address space is capped
 * (setrlimit RLIMIT_AS, like `ulimit -v`) at its size before the load plus
 * that allowance; a loader that goes over gets NN_ERR_NOMEM instead of its
 * expected result, and the case fails. The cases: the committed catalogue
 * (tests/io/malformed: MANIFEST, IDX_MANIFEST) and the large cases that
 * `make_malformed --big DIR 64` writes (64 MiB of tensors or images each:
 * a compressed and a stored model, a 64 MiB tensor for a Linear(2, 3),
 * images with a valid, header-only, empty and short labels file); models
 * and state dicts are loaded from a path, a buffer (read before the cap)
 * and a callback.
 *
 * Skipped (77) under AddressSanitizer and valgrind, which reserve far more
 * address space than the program uses. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#define SLACK ((long long)16 << 20)
#define BIG_MIB "64"

static const char *g_generator;
static char g_dir[] = "/tmp/nn_memrule_XXXXXX";

enum { FROM_PATH, FROM_BUFFER, FROM_STREAM };
static const char *const SOURCE[] = {"path", "buffer", "stream"};

typedef struct mcase {
    char loader[16];        /* model, statedict or idx */
    char file[4096], labels[4096];
    char status[64], msg[256];
    long long ret;          /* bytes a successful load returns */
    bool zeros;             /* the data is all zeros (checked) */
} mcase;

static long long vm_size(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %lld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024;
}

static nn_status status_of(const char *name) {
    for (int c = 0; c >= -40; c--) {
        const char *s = nn_status_string((nn_status)c);
        size_t n = strlen(name);
        if (strncmp(s, name, n) == 0 && (s[n] == ':' || s[n] == '\0')) return (nn_status)c;
    }
    return (nn_status)1;
}

static int64_t file_read(void *dst, size_t cap, void *user) {
    size_t n = fread(dst, 1, cap, (FILE *)user);
    return ferror((FILE *)user) ? -1 : (int64_t)n;
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(len > 0 ? (size_t)len : 1);
    *n = p ? fread(p, 1, (size_t)len, f) : 0;
    fclose(f);
    return p;
}

/* Bytes held by a tensor; whether it is all zeros. */
static long long tensor_bytes(nn_tensor *t, bool *zeros) {
    long long n = (long long)nn_tensor_numel(t) * (long long)nn_dtype_size(nn_tensor_dtype(t));
    const uint8_t *p = nn_tensor_data(t);
    for (long long i = 0; *zeros && i < n; i += 4093) *zeros = p[i] == 0;
    return n;
}

/* Report from the child without allocating (it may be out of address space). */
#define CHILD_FAIL(...)                                                                            \
    do {                                                                                           \
        char m_[1024];                                                                             \
        int n_ = snprintf(m_, sizeof m_ - 1, __VA_ARGS__);                                         \
        n_ = n_ < 0 ? 0 : n_ > (int)sizeof m_ - 2 ? (int)sizeof m_ - 2 : n_;                       \
        m_[n_++] = '\n';                                                                           \
        if (write(1, m_, (size_t)n_) < 0) _exit(2);                                                \
        _exit(1);                                                                                  \
    } while (0)

/* In the child: cap the address space, load, check. Never returns. */
static void child(const mcase *c, int source) {
    size_t n = 0;
    uint8_t *buf = source == FROM_BUFFER ? slurp(c->file, &n) : NULL;
    FILE *stream = source == FROM_STREAM ? fopen(c->file, "rb") : NULL;
    if ((source == FROM_BUFFER && !buf) || (source == FROM_STREAM && !stream))
        CHILD_FAIL("cannot read %s", c->file);
    long long allow = c->ret + c->ret / 4 + SLACK, base = vm_size();
    struct rlimit rl = {(rlim_t)(base + allow), (rlim_t)(base + allow)};
    if (base <= 0 || setrlimit(RLIMIT_AS, &rl) != 0) CHILD_FAIL("cannot set RLIMIT_AS");
    void *probe = malloc((size_t)allow + ((size_t)1 << 20)); /* the cap must bite */
    if (probe) CHILD_FAIL("RLIMIT_AS does not limit allocations");

    nn_clear_error();
    long long got = 0;
    bool ok, zeros = true;
    if (!strcmp(c->loader, "model")) {
        nn_model *m = source == FROM_PATH     ? nn_model_load(c->file, NULL)
                      : source == FROM_BUFFER ? nn_model_load_buffer(buf, n, NULL)
                                              : nn_model_load_stream(file_read, stream, NULL);
        ok = m != NULL;
        nn_module *mod = m ? nn_model_module(m) : NULL;
        for (int64_t i = 0; mod && i < nn_module_num_parameters(mod); i++)
            got += tensor_bytes(nn_module_parameter(mod, i, NULL), &zeros);
        for (int64_t i = 0; mod && i < nn_module_num_buffers(mod); i++)
            got += tensor_bytes(nn_module_buffer(mod, i, NULL), &zeros);
        nn_model_free(m);
    } else if (!strcmp(c->loader, "statedict")) {
        nn_statedict *sd = source == FROM_PATH ? nn_statedict_load(c->file, NULL)
                           : source == FROM_BUFFER
                               ? nn_statedict_load_buffer(buf, n, NULL)
                               : nn_statedict_load_stream(file_read, stream, NULL);
        ok = sd != NULL;
        for (int64_t i = 0; sd && i < nn_statedict_size(sd); i++)
            got += tensor_bytes(nn_statedict_tensor(sd, i), &zeros);
        nn_statedict_free(sd);
    } else {
        nn_dataset *ds = nn_dataset_from_idx(c->file, c->labels);
        ok = ds != NULL;
        if (ds) got = nn_dataset_len(ds) * (784 + 8);
        if (ds && nn_dataset_label(ds, nn_dataset_len(ds) - 1) != 0) zeros = false;
        nn_dataset_free(ds);
    }
    nn_status want = status_of(c->status);
    if (want == NN_OK) {
        if (!ok) CHILD_FAIL("expected success, got %s", nn_last_error());
        if (got != c->ret) CHILD_FAIL("returned %lld bytes, expected %lld", got, c->ret);
        if (c->zeros && !zeros) CHILD_FAIL("the data is not what was written");
    } else {
        if (ok) CHILD_FAIL("accepted");
        if (nn_last_status() != want || !strstr(nn_last_error(), c->msg))
            CHILD_FAIL("expected %s '%s', got %d '%s'", c->status, c->msg, (int)nn_last_status(),
                       nn_last_error());
    }
    _exit(0);
}

/* Run one case from one source in a child; false (and a message) if it fails. */
static bool run(const mcase *c, int source) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) child(c, source);
    int ws = 0;
    if (waitpid(pid, &ws, 0) != pid || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
        printf("  ^ %s %s from a %s, limit 1.25 x %lld + 16 MiB bytes (child status 0x%x)\n",
               c->loader, strrchr(c->file, '/') + 1, SOURCE[source], c->ret, ws);
        return false;
    }
    return true;
}

static int run_all(const mcase *c, int nsources) {
    int bad = 0;
    for (int s = 0; s < nsources; s++) bad += !run(c, s);
    return bad;
}

static void in_dir(char *dst, size_t cap, const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    if (a + b + 2 > cap) a = b = 0;
    memcpy(dst, dir, a);
    dst[a] = '/';
    memcpy(dst + a + 1, name, b + 1);
}

static void test_committed_catalogue(void **s) {
    (void)s;
    char dir[4096], line[512];
    snprintf(dir, sizeof dir, "%s", tu_data_path("io/malformed"));
    int bad = 0, count = 0;
    FILE *f = fopen(tu_data_path("io/malformed/MANIFEST"), "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        mcase c = {.loader = "model"};
        char file[128];
        int off = 0;
        if (sscanf(line, "%127s %63s %n", file, c.status, &off) != 2) continue;
        snprintf(c.msg, sizeof c.msg, "%s", line + off);
        c.msg[strcspn(c.msg, "\n")] = '\0';
        in_dir(c.file, sizeof c.file, dir, file);
        /* Linear(2, 3) when the file is valid: 36 bytes, 24 with a bf16 weight */
        c.ret = strstr(file, "bf16") ? 24 : 36;
        bad += run_all(&c, 3);
        count++;
    }
    fclose(f);
    f = fopen(tu_data_path("io/malformed/IDX_MANIFEST"), "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        mcase c = {.loader = "idx"};
        char im[128], lb[128];
        int off = 0;
        if (sscanf(line, "%127s %127s %63s %n", im, lb, c.status, &off) != 3) continue;
        snprintf(c.msg, sizeof c.msg, "%s", line + off);
        c.msg[strcspn(c.msg, "\n")] = '\0';
        in_dir(c.file, sizeof c.file, dir, im);
        in_dir(c.labels, sizeof c.labels, dir, lb);
        c.ret = status_of(c.status) == NN_OK ? 60000LL * (784 + 8) : 0;
        c.zeros = true;
        bad += run_all(&c, 1);
        count++;
    }
    fclose(f);
    assert_true(count >= 30);
    assert_int_equal(bad, 0);
}

static void test_big_cases(void **s) {
    (void)s;
    char cmd[8192], path[4096], line[1024];
    snprintf(cmd, sizeof cmd, "'%s' --big '%s' " BIG_MIB, g_generator, g_dir);
    assert_int_equal(system(cmd), 0);
    in_dir(path, sizeof path, g_dir, "BIG_MANIFEST");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int bad = 0, count = 0;
    while (fgets(line, sizeof line, f)) {
        mcase c = {.zeros = true};
        char a[128], b[128] = "";
        int off = 0;
        if (sscanf(line, "%15s %127s", c.loader, a) != 2) continue;
        bool idx = !strcmp(c.loader, "idx");
        int k = idx ? sscanf(line, "%*s %*s %127s %63s %lld %n", b, c.status, &c.ret, &off)
                    : sscanf(line, "%*s %*s %63s %lld %n", c.status, &c.ret, &off);
        assert_int_equal(k, idx ? 3 : 2);
        snprintf(c.msg, sizeof c.msg, "%s", line + off);
        c.msg[strcspn(c.msg, "\n")] = '\0';
        in_dir(c.file, sizeof c.file, g_dir, a);
        in_dir(c.labels, sizeof c.labels, g_dir, b);
        bad += run_all(&c, idx ? 1 : 3);
        count++;
    }
    fclose(f);
    assert_true(count >= 9);
    assert_int_equal(bad, 0);
}

static int teardown(void **s) {
    (void)s;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd);
}

int main(int argc, char **argv) {
#ifdef UNDER_ASAN
    printf("skipped: AddressSanitizer reserves terabytes of address space\n");
    return 77;
#endif
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload")) {
        printf("skipped: valgrind's address space is not the program's\n");
        return 77;
    }
    if (argc < 2) {
        printf("usage: %s MAKE_MALFORMED\n", argv[0]);
        return 2;
    }
    g_generator = argv[1];
    if (!mkdtemp(g_dir)) return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_committed_catalogue),
                                       cmocka_unit_test(test_big_cases)};
    return cmocka_run_group_tests(tests, NULL, teardown);
}
