/* Memory-mapped loading figures (README, issue 13): a >= 400 MB model
 * (Sequential(Linear(10240, 10240)), 400 MiB of f32) saved as an aligned
 * model file (NN_IO_OPTION_ALIGNED) and its weights as a safetensors file;
 * median of RUNS loads of each kind: mapped (NN_IO_OPTION_MMAP 1), mapped
 * with every CRC verified by a streaming read (MMAP 2, model file only),
 * and the read-and-copy load beside them in the same run. Also the RSS a
 * mapped load adds before first use (VmRSS after - before, the largest of
 * the runs), the load's own thread CPU time (a loaded host stretches wall
 * time, not CPU time), and the first prediction's agreement with the
 * copied load (bit for bit; a mismatch fails the run). The page cache is
 * warm: each file was just written.
 *   mmap_load [DIR]   (default /tmp; needs ~ 850 MB there and ~1.3 GB of memory)
 * Output: "BENCH <name> 1 <value> <unit>" lines. */
#include "nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RUNS 5

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) v = atol(line + 6);
    if (f) fclose(f);
    return v;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v) {
    qsort(v, RUNS, sizeof *v, cmp);
    return v[RUNS / 2];
}

/* One load: a model (safetensors 0) or a state dict (1), with options o. */
typedef struct loaded {
    nn_model *m;
    nn_statedict *sd;
} loaded;

static loaded load(int safetensors, const char *path, const nn_io_options *o) {
    loaded l = {NULL, NULL};
    if (safetensors) l.sd = nn_safetensors_load(path, o, NULL);
    else l.m = nn_model_load(path, o);
    return l;
}

static nn_tensor *predict(loaded l, nn_tensor *x) {
    if (l.m) return nn_model_predict(l.m, x);
    return nn_linear(x, nn_statedict_get(l.sd, "0.weight"), nn_statedict_get(l.sd, "0.bias"));
}

static void unload(loaded l) {
    nn_model_free(l.m);
    nn_statedict_free(l.sd);
}

/* Median wall and CPU time of RUNS loads with o; *add_kb: the most RSS one
 * added; the first one's prediction compared with ref (when given). */
static int time_loads(int safetensors, const char *path, const nn_io_options *o, nn_tensor *x,
                      nn_tensor *ref, double *wall, double *cpu, long *add_kb) {
    double w[RUNS], c[RUNS];
    *add_kb = 0;
    for (int r = 0; r < RUNS; r++) {
        long before = rss_kb();
        double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID), t0 = clock_s(CLOCK_MONOTONIC);
        loaded l = load(safetensors, path, o);
        w[r] = clock_s(CLOCK_MONOTONIC) - t0;
        c[r] = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
        long added = rss_kb() - before;
        if (added > *add_kb) *add_kb = added;
        if (!l.m && !l.sd) {
            fprintf(stderr, "mmap_load: load of %s: %s\n", path, nn_last_error());
            return 1;
        }
        if (r == 0 && ref) {
            nn_scope *s = nn_scope_begin();
            nn_tensor *y = predict(l, x);
            int same = y && nn_tensor_equal(y, ref);
            nn_scope_end(s);
            if (!same) {
                fprintf(stderr, "mmap_load: %s: mapped and copied predictions differ\n", path);
                unload(l);
                return 1;
            }
        }
        unload(l);
    }
    *wall = median(w);
    *cpu = median(c);
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char paths[2][512];
    snprintf(paths[0], sizeof paths[0], "%s/nn_mmap_bench_%d.nnm", dir, (int)getpid());
    snprintf(paths[1], sizeof paths[1], "%s/nn_mmap_bench_%d.safetensors", dir, (int)getpid());
    nn_generator_seed(NULL, 1);
    nn_module *net = nn_sequential_new();
    if (!net || nn_sequential_append(net, nn_linear_new(10240, 10240, true))) {
        fprintf(stderr, "mmap_load: %s\n", nn_last_error());
        return 1;
    }
    nn_io_options *save = nn_io_options_new(), *map = nn_io_options_new(),
                  *verify = nn_io_options_new();
    nn_io_options_set(save, NN_IO_OPTION_ALIGNED, 1);
    nn_io_options_set(map, NN_IO_OPTION_MMAP, 1);
    nn_io_options_set(verify, NN_IO_OPTION_MMAP, 2);
    nn_statedict *sd = nn_module_state_dict(net);
    if (nn_model_save(net, paths[0], NULL, save)) {
        fprintf(stderr, "mmap_load: save: %s\n", nn_last_error());
        return 1;
    }
    int have_st = nn_safetensors_save(sd, paths[1], NULL, NULL) == NN_OK;
    if (!have_st) printf("# safetensors skipped: %s\n", nn_last_error());
    nn_statedict_free(sd);
    nn_module_free(net);
    int64_t xs[2] = {4, 10240};
    nn_tensor *x = nn_rand(NULL, xs, 2);
    int rc = 0;
    const char *names[2] = {"model", "safetensors"};
    for (int kind = 0; kind < 1 + have_st && !rc; kind++) {
        double cw, cc, mw, mc, vw = 0, vc = 0;
        long c_kb, m_kb, v_kb = 0;
        /* the copied load first: its prediction is the reference */
        loaded ref_l = load(kind, paths[kind], NULL);
        nn_tensor *ref = ref_l.m || ref_l.sd ? nn_tensor_retain(predict(ref_l, x)) : NULL;
        unload(ref_l);
        if (!ref) {
            fprintf(stderr, "mmap_load: %s\n", nn_last_error());
            rc = 1;
            break;
        }
        rc = time_loads(kind, paths[kind], NULL, x, NULL, &cw, &cc, &c_kb) ||
             time_loads(kind, paths[kind], map, x, ref, &mw, &mc, &m_kb) ||
             (kind == 0 && time_loads(kind, paths[kind], verify, x, ref, &vw, &vc, &v_kb));
        nn_tensor_free(ref);
        if (rc) break;
        const char *k = names[kind];
        printf("BENCH mmap_%s_load_ms 1 %.3f ms\n", k, 1e3 * mw);
        printf("BENCH mmap_%s_load_cpu_ms 1 %.3f ms\n", k, 1e3 * mc);
        printf("BENCH mmap_%s_rss_before_use_kb 1 %ld kB\n", k, m_kb);
        if (kind == 0) {
            printf("BENCH mmap_verified_%s_load_ms 1 %.3f ms\n", k, 1e3 * vw);
            printf("BENCH mmap_verified_%s_load_cpu_ms 1 %.3f ms\n", k, 1e3 * vc);
            printf("BENCH mmap_verified_%s_rss_before_use_kb 1 %ld kB\n", k, v_kb);
        }
        printf("BENCH copied_%s_load_ms 1 %.3f ms\n", k, 1e3 * cw);
        printf("BENCH copied_%s_load_cpu_ms 1 %.3f ms\n", k, 1e3 * cc);
        printf("BENCH copied_%s_rss_kb 1 %ld kB\n", k, c_kb);
        printf("BENCH mmap_%s_speedup 1 %.1f x\n", k, cw / mw);
        printf("# %s, 400 MiB of f32: mapped %.2f ms (+%ld kB RSS before use), copied %.1f ms; "
               "predictions equal bit for bit\n",
               k, 1e3 * mw, m_kb, 1e3 * cw);
    }
    nn_tensor_free(x);
    nn_io_options_free(save);
    nn_io_options_free(map);
    nn_io_options_free(verify);
    unlink(paths[0]);
    unlink(paths[1]);
    return rc;
}
