#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

void *tu_nonnull_(void *p, const char *expr, const char *file, int line) {
    if (!p) {
        print_error("%s:%d: %s returned NULL: %s\n", file, line, expr, nn_last_error());
        fail();
    }
    return p;
}

void tu_expect_error(nn_status status, const char *substr) {
    if (nn_last_status() != status)
        fail_msg("expected status %d (%s), got %d: '%s'", (int)status, nn_status_string(status),
                 (int)nn_last_status(), nn_last_error());
    const char *m = nn_last_error();
    if (!m[0]) fail_msg("empty error message");
    if (substr && !strstr(m, substr)) fail_msg("message '%s' lacks '%s'", m, substr);
    nn_clear_error();
}

/* ---------------------------------------------------------- allocator */
static long g_count, g_fail_at, g_live;

static void *tu_malloc(size_t n, void *u) {
    (void)u;
    g_count++;
    if (g_fail_at && g_count == g_fail_at) return NULL;
    void *p = malloc(n);
    if (p) g_live++;
    return p;
}
static void *tu_realloc(void *p, size_t n, void *u) {
    (void)u;
    g_count++;
    if (g_fail_at && g_count == g_fail_at) return NULL;
    void *q = realloc(p, n);
    if (q && !p) g_live++;
    return q;
}
static void tu_free(void *p, void *u) {
    (void)u;
    if (p) g_live--;
    free(p);
}

void tu_alloc_install(void) { nn_set_allocator(tu_malloc, tu_realloc, tu_free, NULL); }
void tu_alloc_uninstall(void) { nn_set_allocator(NULL, NULL, NULL, NULL); }
void tu_alloc_fail_at(long k) {
    g_fail_at = k;
    g_count = 0;
}
long tu_alloc_count(void) { return g_count; }
long tu_alloc_live(void) { return g_live; }

long tu_oom_sweep(int (*body)(void *ctx), void *ctx) {
    tu_alloc_install();
    long k;
    for (k = 1; k < 1000000; k++) {
        long live0 = g_live;
        tu_alloc_fail_at(k);
        nn_clear_error();
        int rc = body(ctx);
        long made = g_count;
        tu_alloc_fail_at(0);
        if (g_live != live0) {
            tu_alloc_uninstall();
            fail_msg("leak: %ld blocks after failing allocation %d (rc %d, err '%s')",
                     g_live - live0, (int)k, rc, nn_last_error());
        }
        if (rc != 0 && made >= k && nn_last_status() == NN_OK) {
            tu_alloc_uninstall();
            fail_msg("allocation %ld failed but no error was reported", k);
        }
        if (made < k) { /* no failure was injected: the sweep is complete */
            if (rc != 0) {
                tu_alloc_uninstall();
                fail_msg("body failed without an injected failure: %s", nn_last_error());
            }
            break;
        }
    }
    tu_alloc_uninstall();
    return k - 1;
}

/* ------------------------------------------------------------ tensors */
nn_tensor *tu_tensor(const int64_t *shape, int ndim, const float *values) {
    return TU_NN(nn_tensor_from_data(NN_DTYPE_F32, shape, ndim, values));
}

nn_tensor *tu_rand(uint64_t seed, const int64_t *shape, int ndim, double lo, double hi) {
    nn_generator *g = nn_generator_new(seed);
    nn_tensor *t = TU_NN(nn_uniform(g, shape, ndim, lo, hi));
    nn_generator_free(g);
    return t;
}

/* --------------------------------------------------------- gradcheck */
static double weighted_sum(nn_tensor *out, const float *r) {
    nn_tensor *c = nn_tensor_contiguous(out);
    const float *p = nn_tensor_data(c);
    double s = 0;
    for (int64_t i = 0; i < nn_tensor_numel(c); i++) s += (double)p[i] * r[i];
    nn_tensor_free(c);
    return s;
}

void tu_gradcheck(tu_fn fn, nn_tensor **inputs, int n, void *ctx, double eps, double atol,
                  double rtol) {
    for (int i = 0; i < n; i++) nn_tensor_zero_grad(inputs[i]);
    nn_tensor *out = fn(inputs, ctx);
    if (!out) fail_msg("gradcheck: forward failed: %s", nn_last_error());
    int64_t m = nn_tensor_numel(out);
    float *r = malloc(sizeof(float) * (size_t)(m ? m : 1));
    nn_generator *g = nn_generator_new(1234);
    for (int64_t i = 0; i < m; i++) r[i] = (float)(nn_generator_next(g) >> 40) * 0x1.0p-24f * 2.0f - 1.0f;
    nn_generator_free(g);
    nn_tensor *rt = nn_tensor_from_data(NN_DTYPE_F32, nn_tensor_shape(out), nn_tensor_ndim(out), r);
    TU_OK(nn_backward_ex(out, rt, false));
    nn_tensor_free(rt);
    nn_tensor_free(out);

    bool prev = nn_set_grad_enabled(false);
    for (int k = 0; k < n; k++) {
        nn_tensor *x = inputs[k];
        if (!nn_tensor_requires_grad(x)) continue;
        nn_tensor *gr = nn_tensor_grad(x);
        float *xp = nn_tensor_data(x);
        int64_t nx = nn_tensor_numel(x);
        for (int64_t i = 0; i < nx; i++) {
            float orig = xp[i];
            xp[i] = (float)(orig + eps);
            nn_tensor *o1 = fn(inputs, ctx);
            double f1 = weighted_sum(o1, r);
            nn_tensor_free(o1);
            xp[i] = (float)(orig - eps);
            nn_tensor *o2 = fn(inputs, ctx);
            double f2 = weighted_sum(o2, r);
            nn_tensor_free(o2);
            xp[i] = orig;
            double num = (f1 - f2) / (2 * eps);
            double ana = gr ? ((const float *)nn_tensor_data(gr))[i] : 0.0;
            if (!(fabs(ana - num) <= atol + rtol * fabs(num)))
                fail_msg("gradcheck: input %d element %lld: analytic %.6g vs numeric %.6g", k,
                         (long long)i, ana, num);
        }
    }
    nn_set_grad_enabled(prev);
    free(r);
}

/* ------------------------------------------------------------ golden */
typedef struct {
    char name[128];
    nn_tensor *t;
} golden_entry;

struct tu_golden {
    golden_entry *e;
    int n, cap;
};

const char *tu_data_path(const char *rel) {
    static char buf[4096];
    const char *root = getenv("NN_TEST_DATA");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : ".", rel);
    return buf;
}

tu_golden *tu_golden_open(const char *file) {
    char rel[512];
    snprintf(rel, sizeof rel, "golden/%s", file);
    FILE *f = fopen(tu_data_path(rel), "r");
    if (!f) fail_msg("cannot open golden file %s", tu_data_path(rel));
    tu_golden *g = calloc(1, sizeof *g);
    char kw[16], name[128], dt[8];
    int ndim;
    while (fscanf(f, "%15s %127s %7s %d", kw, name, dt, &ndim) == 4) {
        if (strcmp(kw, "tensor") != 0 || ndim < 0 || ndim > NN_MAX_DIMS) fail_msg("bad golden record %s", name);
        int64_t shape[NN_MAX_DIMS], numel = 1;
        for (int i = 0; i < ndim; i++) {
            long long d;
            if (fscanf(f, "%lld", &d) != 1) fail_msg("bad golden shape for %s", name);
            shape[i] = d;
            numel *= d;
        }
        bool is_i64 = strcmp(dt, "i64") == 0;
        nn_tensor *t = nn_tensor_empty(is_i64 ? NN_DTYPE_I64 : NN_DTYPE_F32, shape, ndim);
        void *p = nn_tensor_data(t);
        for (int64_t i = 0; i < numel; i++) {
            double v;
            if (fscanf(f, "%lf", &v) != 1) fail_msg("bad golden values for %s", name);
            if (is_i64) ((int64_t *)p)[i] = (int64_t)v;
            else ((float *)p)[i] = (float)v;
        }
        if (g->n == g->cap) {
            g->cap = g->cap ? g->cap * 2 : 64;
            g->e = realloc(g->e, sizeof *g->e * (size_t)g->cap);
        }
        snprintf(g->e[g->n].name, sizeof g->e[g->n].name, "%s", name);
        g->e[g->n++].t = t;
    }
    fclose(f);
    return g;
}

int tu_golden_has(tu_golden *g, const char *name) {
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->e[i].name, name) == 0) return 1;
    return 0;
}

nn_tensor *tu_golden_get(tu_golden *g, const char *name) {
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->e[i].name, name) == 0) return g->e[i].t;
    fail_msg("golden tensor '%s' missing", name);
    return NULL;
}

void tu_golden_close(tu_golden *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) nn_tensor_free(g->e[i].t);
    free(g->e);
    free(g);
}

void tu_assert_close(const nn_tensor *got, const nn_tensor *want, double rtol, double atol,
                     const char *what) {
    if (!got) fail_msg("%s: result is NULL: %s", what, nn_last_error());
    int nd = nn_tensor_ndim(got);
    if (nd != nn_tensor_ndim(want) ||
        memcmp(nn_tensor_shape(got), nn_tensor_shape(want), sizeof(int64_t) * (size_t)nd) != 0) {
        char *a = nn_tensor_format(got, 4), *b = nn_tensor_format(want, 4);
        fail_msg("%s: shape mismatch\n got  %s\n want %s", what, a, b);
    }
    int64_t n = nn_tensor_numel(got);
    for (int64_t i = 0; i < n; i++) {
        int64_t idx[NN_MAX_DIMS], r = i;
        for (int d = nd - 1; d >= 0; d--) {
            idx[d] = r % nn_tensor_shape(got)[d];
            r /= nn_tensor_shape(got)[d];
        }
        double x, y;
        nn_tensor_get(got, idx, &x);
        nn_tensor_get(want, idx, &y);
        if (isnan(y) && isnan(x)) continue;
        if (!(fabs(x - y) <= atol + rtol * fabs(y)))
            fail_msg("%s: element %lld: got %.9g, want %.9g (rtol %g, atol %g)", what, (long long)i, x, y,
                     rtol, atol);
    }
}

/* ------------------------------------------------------ scratch directory */

static char tu_dir_[256];

const char *tu_tmpdir(void) { return tu_dir_; }

const char *tu_tmp_path(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tu_dir_, name);
    return buf;
}

int tu_tmpdir_setup(void **state) {
    (void)state;
    snprintf(tu_dir_, sizeof tu_dir_, "/tmp/nn_test_XXXXXX");
    return mkdtemp(tu_dir_) ? 0 : -1;
}

static void tu_remove_tree_(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[1024];
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            tu_remove_tree_(p);
        else
            unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

int tu_tmpdir_teardown(void **state) {
    (void)state;
    if (tu_dir_[0]) tu_remove_tree_(tu_dir_);
    return 0;
}

uint8_t *tu_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len ? (size_t)len : 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

void tu_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

long tu_smaps_kb(const char *path, const char *key) {
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    char line[1024];
    bool in = false;
    long total = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (line[0] != ' ' && strspn(line, "0123456789abcdef") > 0 && strchr(line, '-') &&
            strchr(line, ' ') && strchr(line, '-') < strchr(line, ' ')) {
            line[strcspn(line, "\n")] = '\0';
            size_t ll = strlen(line), pl = strlen(path);
            in = ll >= pl && !strcmp(line + ll - pl, path);
        } else if (in && !strncmp(line, key, kl) && line[kl] == ':') {
            total += atol(line + kl + 1);
        }
    }
    fclose(f);
    return total;
}

double tu_in_second_process(const char *path, double (*child)(const char *path, void *ctx),
                            void *ctx, long *shared_kb, long *private_kb) {
    int pipefd[2], back[2];
    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(pipe(back), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        double v = child(path, ctx);
        (void)!write(pipefd[1], &v, sizeof v);
        char go;
        (void)!read(back[0], &go, 1); /* hold the mapping until the parent has looked */
        _exit(0);
    }
    double v;
    assert_int_equal(read(pipefd[0], &v, sizeof v), (ssize_t)sizeof v);
    *shared_kb = tu_smaps_kb(path, "Shared_Clean");
    *private_kb = tu_smaps_kb(path, "Private_Dirty");
    (void)!write(back[1], "x", 1);
    int status;
    waitpid(pid, &status, 0);
    close(pipefd[0]);
    close(pipefd[1]);
    close(back[0]);
    close(back[1]);
    return v;
}
