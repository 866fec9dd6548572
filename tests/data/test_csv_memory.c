/* The CSV reader's memory rule: peak memory <= 1.25 x what it returns + 16 MB.
 * Two generated ~100 MB files (one row of 50 million cells; 7 million short
 * rows) are loaded in a child process whose address space is capped with
 * RLIMIT_AS at its size before the load + 1.25 x (x + y bytes) + 16 MB; the
 * child also reports its VmPeak growth. The old reader asked for 13.4 GB on
 * the one-row file. Skipped (77) under ASan and valgrind, whose own address
 * space makes RLIMIT_AS meaningless. */
#include "nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#endif

#define MB (1024.0 * 1024.0)

/* A field of /proc/self/status in bytes (kB there), or -1. */
static long long status_bytes(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') v = atoll(line + n + 1) * 1024;
    if (f) fclose(f);
    return v;
}

/* Write `unit` repeated `count` times, then `tail`, to path. */
static int generate(const char *path, const char *unit, long long count, const char *tail) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    char block[1 << 16];
    size_t ulen = strlen(unit), per = sizeof block / ulen;
    for (size_t i = 0; i < per; i++) memcpy(block + i * ulen, unit, ulen);
    for (long long left = count; left > 0;) {
        size_t k = left < (long long)per ? (size_t)left : per;
        if (fwrite(block, ulen, k, f) != k) break;
        left -= (long long)k;
    }
    fputs(tail, f);
    return fclose(f) == 0 ? 0 : -1;
}

/* In a child: load path under the cap and check the shape and a few values.
 * Returns 0 on success. */
static int load_capped(const char *what, const char *warm, const char *path, bool has_label,
                       int label_col, int64_t rows, int64_t feats, float first, int64_t label) {
    double ret = (double)rows * (double)feats * 4 + (double)rows * 8;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        /* Warm up every lazily initialised part of the library first. */
        nn_dataset *w = nn_dataset_from_csv(warm, false, ',', false, 0, NN_CSV_POLICY_ERROR, 0,
                                            NULL, NULL);
        if (!w) {
            printf("%s: warm-up failed: %s\n", what, nn_last_error());
            fflush(stdout);
            _exit(1);
        }
        nn_dataset_free(w);
        long long base = status_bytes("VmSize"), peak0 = status_bytes("VmPeak");
        double cap = (double)base + 1.25 * ret + 16 * MB;
        struct rlimit old, rl;
        if (base < 0 || getrlimit(RLIMIT_AS, &old) != 0) {
            printf("%s: cannot read VmSize or RLIMIT_AS\n", what);
            fflush(stdout);
            _exit(1);
        }
        rl = (struct rlimit){(rlim_t)cap, old.rlim_max}; /* soft: lifted again below */
        if (setrlimit(RLIMIT_AS, &rl) != 0) {
            printf("%s: cannot set RLIMIT_AS\n", what);
            fflush(stdout);
            _exit(1);
        }
        nn_dataset *ds = nn_dataset_from_csv(path, false, ',', has_label, label_col,
                                             NN_CSV_POLICY_ERROR, 0, NULL, NULL);
        long long peak = status_bytes("VmPeak");
        setrlimit(RLIMIT_AS, &old); /* checking a 50-million-cell sample copies it */
        if (!ds) {
            printf("%s: under a cap of %.1f MB above %.1f MB: %s\n", what, (cap - base) / MB,
                   base / MB, nn_last_error());
            fflush(stdout);
            _exit(1);
        }
        int64_t shape[2];
        int bad = nn_dataset_len(ds) != rows || nn_dataset_sample_shape(ds, shape, 2) != 1 ||
                  shape[0] != feats;
        nn_tensor *x = NULL, *y = NULL;
        if (!bad && nn_dataset_get(ds, rows - 1, &x, &y) == NN_OK)
            bad = ((const float *)nn_tensor_data(x))[0] != first ||
                  (int64_t)nn_tensor_item(y) != label;
        else
            bad = 1;
        printf("%s: %lld x %lld, returns %.1f MB; peak grew %.1f MB (limit %.1f MB = 1.25 x "
               "returned + 16 MB)%s\n",
               what, (long long)rows, (long long)feats, ret / MB,
               (double)(peak - (peak0 > base ? peak0 : base)) / MB, (cap - base) / MB,
               bad ? ": WRONG CONTENTS" : "");
        nn_tensor_free(x);
        nn_tensor_free(y);
        nn_dataset_free(ds);
        fflush(stdout);
        _exit(bad);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(void) {
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "valgrind")) {
        printf("SKIP: under valgrind\n");
        return 77;
    }
#ifdef UNDER_ASAN
    printf("SKIP: under AddressSanitizer\n");
    return 77;
#endif
    const char *tmp = getenv("TMPDIR");
    char dir[512], warm[600], one_row[600], many[600];
    snprintf(dir, sizeof dir, "%s/nn_csv_mem_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(warm, sizeof warm, "%s/warm.csv", dir);
    snprintf(one_row, sizeof one_row, "%s/one-row.csv", dir);
    snprintf(many, sizeof many, "%s/many-rows.csv", dir);
    const long long cells = 50000000, rows = 7000000; /* 100 MB and 98 MB */
    int rc = generate(warm, "1,2\n", 2, "") || generate(one_row, "1,", cells - 1, "7\n") ||
             generate(many, "0.25,-1.5,3,1\n", rows, "");
    if (rc)
        printf("cannot write the files in %s\n", dir);
    else {
        rc |= load_capped("one row", warm, one_row, false, 0, 1, cells, 1, 0) != 0;
        rc |= load_capped("many rows", warm, many, true, 3, rows, 3, 0.25f, 1) != 0;
    }
    unlink(warm);
    unlink(one_row);
    unlink(many);
    rmdir(dir);
    return rc;
}
