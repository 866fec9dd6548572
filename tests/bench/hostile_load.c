/* Hostile-load figures (README, "Tests"): load times of the format's
 * largest valid trees, and peak memory and time of every loader on large
 * hostile and valid files.
 *
 *   hostile_load MAKE_MALFORMED [MIB] [ROUNDS]
 *
 * 1. A Sequential of 65,535 children (1.6 MB) and one of 32,768
 *    Linear(1, 1) (65,536 tensors, 6.8 MB) are saved, then loaded ROUNDS
 *    times (default 5): median wall time and CPU time per load.
 * 2. `MAKE_MALFORMED --big DIR MIB` (default 1024) writes the large cases;
 *    each is loaded in a fresh child process, whose peak RSS (VmHWM, reset
 *    just before the load) above its RSS before the load is reported next
 *    to the bytes the load returns.
 *
 * Only the public API is used, so the same program measures an older
 * libnn.so (LD_LIBRARY_PATH) for before/after figures. */
#include "nn.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double cpu_now(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + (double)r.ru_stime.tv_sec +
           ((double)r.ru_utime.tv_usec + (double)r.ru_stime.tv_usec) * 1e-6;
}

static char g_dir[] = "/tmp/nn_hostile_XXXXXX";

static const char *in_dir(const char *name) {
    static char p[2][4200];
    static int k;
    k ^= 1;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

/* --------------------------------------------------------- load times */

static void time_loads(const char *file, const char *what, int rounds, int sd) {
    double wall[64], cpu[64];
    for (int r = 0; r < rounds; r++) {
        double t0 = bench_now_s(), c0 = cpu_now();
        if (sd) {
            nn_statedict *x = nn_statedict_load(file, NULL);
            if (!x) bench_die(file);
            wall[r] = bench_now_s() - t0;
            cpu[r] = cpu_now() - c0;
            nn_statedict_free(x);
        } else {
            nn_model *x = nn_model_load(file, NULL);
            if (!x) bench_die(file);
            wall[r] = bench_now_s() - t0;
            cpu[r] = cpu_now() - c0;
            nn_model_free(x);
        }
    }
    FILE *f = fopen(file, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    printf("| %s | %.1f MB | %.3f s | %.3f s |\n", what, (double)size / 1e6,
           bench_median(wall, rounds), bench_median(cpu, rounds));
}

static void part1(int rounds) {
    nn_module *seq = nn_sequential_new();
    for (int i = 0; i < 65535; i++)
        if (nn_sequential_append(seq, i % 2 ? nn_tanh_new() : nn_relu_new())) bench_die("append");
    double t0 = bench_now_s();
    if (nn_model_save(seq, in_dir("children.nnm"), NULL, NULL)) bench_die("save");
    double save_children = bench_now_s() - t0;
    nn_module_free(seq);
    seq = nn_sequential_new();
    for (int i = 0; i < 32768; i++)
        if (nn_sequential_append(seq, nn_linear_new(1, 1, true))) bench_die("append");
    t0 = bench_now_s();
    if (nn_model_save(seq, in_dir("tensors.nnm"), NULL, NULL)) bench_die("save");
    double save_tensors = bench_now_s() - t0;
    nn_module_free(seq);
    printf("Load times, median of %d (wall, and CPU time of this process):\n\n", rounds);
    printf("| file | size | wall | CPU |\n|---|---|---|---|\n");
    time_loads(in_dir("children.nnm"), "nn_model_load, 65,535 children", rounds, 0);
    time_loads(in_dir("tensors.nnm"), "nn_model_load, 65,536 tensors", rounds, 0);
    time_loads(in_dir("tensors.nnm"), "nn_statedict_load, 65,536 tensors", rounds, 1);
    printf("\nSaving them: %.3f s (children), %.3f s (tensors).\n\n", save_children, save_tensors);
    unlink(in_dir("children.nnm"));
    unlink(in_dir("tensors.nnm"));
}

/* ---------------------------------------------------------- peak memory */

static long long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') kb = atoll(line + n + 1);
    if (f) fclose(f);
    return kb;
}

static int64_t file_read(void *dst, size_t cap, void *user) {
    return (int64_t)fread(dst, 1, cap, (FILE *)user);
}

typedef struct result {
    double seconds, cpu;
    long long peak_kb;
    int status;
    char msg[160];
} result;

/* In a child: load once, report through a pipe. */
static void measure(const char *loader, const char *a, const char *b, int stream, int fd) {
    result r = {0};
    FILE *in = stream ? fopen(a, "rb") : NULL;
    long long base = status_kb("VmRSS");
    FILE *c = fopen("/proc/self/clear_refs", "w"); /* "5": reset the peak to now */
    if (c) {
        fputs("5", c);
        fclose(c);
    }
    double t0 = bench_now_s(), c0 = cpu_now();
    if (!strcmp(loader, "model")) {
        nn_model *m = stream ? nn_model_load_stream(file_read, in, NULL) : nn_model_load(a, NULL);
        r.seconds = bench_now_s() - t0;
        nn_model_free(m);
    } else if (!strcmp(loader, "statedict")) {
        nn_statedict *sd =
            stream ? nn_statedict_load_stream(file_read, in, NULL) : nn_statedict_load(a, NULL);
        r.seconds = bench_now_s() - t0;
        nn_statedict_free(sd);
    } else {
        nn_dataset *ds = nn_dataset_from_idx(a, b);
        r.seconds = bench_now_s() - t0;
        nn_dataset_free(ds);
    }
    r.cpu = cpu_now() - c0;
    r.peak_kb = status_kb("VmHWM") - base;
    r.status = (int)nn_last_status();
    snprintf(r.msg, sizeof r.msg, "%s", r.status ? nn_last_error() : "");
    if (write(fd, &r, sizeof r) != (ssize_t)sizeof r) _exit(1);
    _exit(0);
}

static void part2(const char *generator, const char *mib) {
    char cmd[8600], line[1024];
    snprintf(cmd, sizeof cmd, "'%s' --big '%s' %s", generator, g_dir, mib);
    printf("Large cases (`make_malformed --big DIR %s`), each loaded in a fresh process:\n\n", mib);
    fflush(stdout);
    if (system(cmd) != 0) bench_die("make_malformed");
    FILE *f = fopen(in_dir("BIG_MANIFEST"), "r");
    if (!f) bench_die("BIG_MANIFEST");
    printf("| loader | file | result | wall | CPU | peak RSS - RSS before | returned | ratio |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    while (fgets(line, sizeof line, f)) {
        char loader[16], a[128], b[128] = "", status[64];
        long long ret = 0;
        if (sscanf(line, "%15s %127s", loader, a) != 2) continue;
        int idx = !strcmp(loader, "idx");
        if (idx) sscanf(line, "%*s %*s %127s %63s %lld", b, status, &ret);
        else sscanf(line, "%*s %*s %63s %lld", status, &ret);
        for (int stream = 0; stream <= !idx; stream++) {
            int fds[2];
            if (pipe(fds) != 0) bench_die("pipe");
            char pa[4200], pb[4200];
            snprintf(pa, sizeof pa, "%s", in_dir(a));
            snprintf(pb, sizeof pb, "%s", in_dir(b));
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) {
                close(fds[0]);
                measure(loader, pa, pb, stream, fds[1]);
            }
            close(fds[1]);
            result r;
            int ok = read(fds[0], &r, sizeof r) == (ssize_t)sizeof r;
            close(fds[0]);
            waitpid(pid, NULL, 0);
            if (!ok) {
                printf("| %s | %s | (child failed) | | | | | |\n", loader, a);
                continue;
            }
            char file[300], res[64], ratio[32] = "";
            snprintf(file, sizeof file, "%s%s%s%s", a, idx ? " + " : "", b,
                     stream ? " (stream)" : "");
            snprintf(res, sizeof res, "%s", r.status ? nn_status_string((nn_status)r.status) : "ok");
            res[strcspn(res, ":")] = '\0';
            if (ret) snprintf(ratio, sizeof ratio, "%.2fx", (double)r.peak_kb * 1024 / (double)ret);
            printf("| %s | %s | %s | %.2f s | %.2f s | %.1f MB | %.1f MB | %s |\n", loader, file,
                   res, r.seconds, r.cpu, (double)r.peak_kb * 1024 / 1e6, (double)ret / 1e6, ratio);
        }
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "rm -f '%s'/big_* '%s'/huge_* '%s'/BIG_MANIFEST", g_dir, g_dir, g_dir);
    if (system(cmd) != 0) bench_die("rm");
}

int main(int argc, char **argv) {
    bench_prog = "hostile_load";
    if (argc < 2) {
        fprintf(stderr, "usage: %s MAKE_MALFORMED [MIB] [ROUNDS]\n", argv[0]);
        return 2;
    }
    const char *mib = argc > 2 ? argv[2] : "1024";
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    if (rounds < 1 || rounds > 64) rounds = 5;
    if (!mkdtemp(g_dir)) bench_die("mkdtemp");
    nn_set_num_threads(1);
    printf("libnn %s\n\n", nn_version());
    part1(rounds);
    part2(argv[1], mib);
    rmdir(g_dir);
    return 0;
}
