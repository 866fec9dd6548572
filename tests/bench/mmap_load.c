/* Memory-mapped loading figures (README): a >= 400 MB model (Linear(10240,
 * 10240), 400 MiB of f32) saved aligned, and the same weights as a
 * safetensors file; medians of 5 loads of each kind, mapped (NN_IO_OPTION_MMAP
 * 1) against read-and-copy in the same run, the RSS a mapped load adds
 * before first use, and the first prediction's agreement with the copied
 * load (bit for bit). The page cache is warm (each file was just written).
 *   mmap_load [DIR]   (default /tmp) */
#include "nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
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

#define RUNS 5

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char model_path[512], st_path[512];
    snprintf(model_path, sizeof model_path, "%s/nn_mmap_bench_%d.nnm", dir, (int)getpid());
    snprintf(st_path, sizeof st_path, "%s/nn_mmap_bench_%d.safetensors", dir, (int)getpid());
    nn_module *net = nn_sequential_new();
    nn_sequential_append(net, nn_linear_new(10240, 10240, true));
    nn_io_options *save = nn_io_options_new(), *map = nn_io_options_new();
    nn_io_options_set(save, NN_IO_OPTION_ALIGNED, 1);
    nn_io_options_set(map, NN_IO_OPTION_MMAP, 1);
    nn_statedict *sd = nn_module_state_dict(net);
    if (nn_model_save(net, model_path, NULL, save) || nn_safetensors_save(sd, st_path, NULL, NULL)) {
        fprintf(stderr, "save: %s\n", nn_last_error());
        return 1;
    }
    nn_statedict_free(sd);
    nn_module_free(net);
    int64_t xs[2] = {4, 10240};
    nn_tensor *x = nn_rand(NULL, xs, 2);
    int rc = 0;
    for (int kind = 0; kind < 2; kind++) {
        const char *path = kind ? st_path : model_path;
        double t_map[RUNS], t_copy[RUNS];
        long add_kb = 0;
        for (int r = 0; r < RUNS; r++) {
            long before = rss_kb();
            double t0 = now();
            nn_model *mm = kind ? NULL : nn_model_load(path, map);
            nn_statedict *ms = kind ? nn_safetensors_load(path, map, NULL) : NULL;
            t_map[r] = now() - t0;
            long after = rss_kb();
            if (after - before > add_kb) add_kb = after - before;
            t0 = now();
            nn_model *cm = kind ? NULL : nn_model_load(path, NULL);
            nn_statedict *cs = kind ? nn_safetensors_load(path, NULL, NULL) : NULL;
            t_copy[r] = now() - t0;
            if ((!mm && !ms) || (!cm && !cs)) {
                fprintf(stderr, "load: %s\n", nn_last_error());
                return 1;
            }
            if (r == 0) { /* predictions: mapped == copied, bit for bit */
                nn_tensor *a = kind ? nn_matmul(x, nn_statedict_get(ms, "0.weight"))
                                    : nn_model_predict(mm, x);
                nn_tensor *b = kind ? nn_matmul(x, nn_statedict_get(cs, "0.weight"))
                                    : nn_model_predict(cm, x);
                if (!nn_tensor_equal(a, b)) {
                    fprintf(stderr, "mapped and copied predictions differ\n");
                    rc = 1;
                }
                nn_tensor_free(a);
                nn_tensor_free(b);
            }
            nn_model_free(mm);
            nn_model_free(cm);
            nn_statedict_free(ms);
            nn_statedict_free(cs);
        }
        qsort(t_map, RUNS, sizeof *t_map, cmp);
        qsort(t_copy, RUNS, sizeof *t_copy, cmp);
        printf("mmap_load %-11s 400 MiB: mapped %.2f ms (+%ld kB RSS before use), copied %.1f ms, "
               "ratio %.0fx, predictions equal: %s\n",
               kind ? "safetensors" : "model", 1e3 * t_map[RUNS / 2], add_kb,
               1e3 * t_copy[RUNS / 2], t_copy[RUNS / 2] / t_map[RUNS / 2], rc ? "no" : "yes");
    }
    nn_tensor_free(x);
    nn_io_options_free(save);
    nn_io_options_free(map);
    unlink(model_path);
    unlink(st_path);
    return rc;
}
