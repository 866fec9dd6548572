/* The committed catalogue of handcrafted malformed model files: each is
 * rejected with its specific status and message (tests/io/malformed/MANIFEST,
 * written by make_malformed.c together with the files); likewise the IDX
 * image/label pairs of IDX_MANIFEST. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static nn_status status_of(const char *name) {
    for (int c = 0; c >= -40; c--) {
        const char *s = nn_status_string((nn_status)c);
        size_t n = strlen(name);
        if (strncmp(s, name, n) == 0 && (s[n] == ':' || s[n] == '\0')) return (nn_status)c;
    }
    fail_msg("unknown status name %s", name);
    return NN_OK;
}

/* The catalogue through nn_model_load with NN_IO_OPTION_MMAP = mmap (0: the
 * copying loader). Mapping applies to the aligned entries (the others are
 * read and copied): MMAP 2 verifies every CRC and must give the manifest's
 * verdict; MMAP 1 reads no tensor byte, so a damaged tensor section (an
 * NN_ERR_CHECKSUM entry) may load instead (FORMAT.md 11). */
static void run_catalogue(int mmap) {
    nn_io_options *o = TU_NN(nn_io_options_new());
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_MMAP, mmap));
    FILE *f = fopen(tu_data_path("io/malformed/MANIFEST"), "r");
    assert_non_null(f);
    char line[512];
    int count = 0;
    while (fgets(line, sizeof line, f)) {
        char file[128], status[64];
        int off = 0;
        if (sscanf(line, "%127s %63s %n", file, status, &off) != 2) continue;
        char *msg = line + off;
        msg[strcspn(msg, "\n")] = '\0';
        char rel[256];
        snprintf(rel, sizeof rel, "io/malformed/%s", file);
        nn_clear_error();
        nn_model *m = nn_model_load(tu_data_path(rel), o);
        nn_status want = status_of(status);
        if (mmap == 1 && want == NN_ERR_CHECKSUM && m) {
            nn_model_free(m);
            count++;
            continue;
        }
        /* Without libsodium a signed or encrypted file is unsupported. */
        uint8_t k[32];
        if (!strncmp(file, "sealed_", 7) && nn_encrypt_keygen(k, 32) == NN_ERR_UNSUPPORTED) {
            nn_clear_error();
            nn_model_free(m);
            m = nn_model_load(tu_data_path(rel), o);
            want = NN_ERR_UNSUPPORTED;
            snprintf(msg, 8, "sodium");
        }
        if (want == NN_OK) {
            if (!m) fail_msg("%s: expected success (MMAP %d), got %s", file, mmap, nn_last_error());
        } else {
            if (m) fail_msg("%s: accepted (MMAP %d)", file, mmap);
            if (nn_last_status() != want || !strstr(nn_last_error(), msg))
                fail_msg("%s: expected %s '%s' (MMAP %d), got %d '%s'", file, status, msg, mmap,
                         (int)nn_last_status(), nn_last_error());
            if (!strstr(nn_last_error(), "nn_model_load"))
                fail_msg("%s: message does not name the function: %s", file, nn_last_error());
        }
        nn_model_free(m);
        count++;
    }
    fclose(f);
    nn_io_options_free(o);
    assert_true(count >= 25);
}

static void test_catalogue(void **s) {
    (void)s;
    run_catalogue(0);
}

static void test_catalogue_mapped(void **s) {
    (void)s;
    run_catalogue(1);
    run_catalogue(2);
}

/* IDX pairs: "<images> <labels> <status> <substring>". */
static void test_idx_catalogue(void **s) {
    (void)s;
    FILE *f = fopen(tu_data_path("io/malformed/IDX_MANIFEST"), "r");
    assert_non_null(f);
    char line[512];
    int count = 0;
    while (fgets(line, sizeof line, f)) {
        char images[128], labels[128], status[64], im[4096], lb[4096], rel[256];
        int off = 0;
        if (sscanf(line, "%127s %127s %63s %n", images, labels, status, &off) != 3) continue;
        char *msg = line + off;
        msg[strcspn(msg, "\n")] = '\0';
        snprintf(rel, sizeof rel, "io/malformed/%s", images);
        snprintf(im, sizeof im, "%s", tu_data_path(rel));
        snprintf(rel, sizeof rel, "io/malformed/%s", labels);
        snprintf(lb, sizeof lb, "%s", tu_data_path(rel));
        nn_clear_error();
        nn_dataset *ds = nn_dataset_from_idx(im, lb);
        nn_status want = status_of(status);
        if (want == NN_OK) {
            if (!ds) fail_msg("%s + %s: expected success, got %s", images, labels, nn_last_error());
            assert_int_equal(nn_dataset_len(ds), 60000);
            assert_int_equal(nn_dataset_label(ds, 59999), 0);
        } else {
            if (ds) fail_msg("%s + %s: accepted", images, labels);
            if (nn_last_status() != want || !strstr(nn_last_error(), msg))
                fail_msg("%s + %s: expected %s '%s', got %d '%s'", images, labels, status, msg,
                         (int)nn_last_status(), nn_last_error());
        }
        nn_dataset_free(ds);
        count++;
    }
    fclose(f);
    assert_true(count >= 4);
}

static const char *g_generator;

static unsigned char *slurp(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *p = NULL;
    size_t cap = 0, k;
    *n = 0;
    do {
        if (*n == cap) p = realloc(p, cap = cap ? cap * 2 : 4096);
        k = fread(p + *n, 1, cap - *n, f);
        *n += k;
    } while (k > 0);
    fclose(f);
    return p;
}

/* The committed files equal what make_malformed.c writes today. */
static void test_catalogue_up_to_date(void **s) {
    (void)s;
    if (!g_generator) skip();
    char dir[] = "/tmp/nn_malformed_XXXXXX", cmd[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "'%s' '%s'", g_generator, dir);
    assert_int_equal(system(cmd), 0);
    int files = 0;
    const char *manifests[2] = {"MANIFEST", "IDX_MANIFEST"};
    for (int k = 0; k < 2; k++) {
        char mpath[512], line[512];
        snprintf(mpath, sizeof mpath, "%s/%s", dir, manifests[k]);
        FILE *mf = fopen(mpath, "r");
        assert_non_null(mf);
        while (fgets(line, sizeof line, mf)) {
            char name[2][128];
            int nn = sscanf(line, "%127s %127s", name[0], name[1]);
            for (int j = 0; j < (k ? nn : 1); j++) {
                char fresh[512], rel[256];
                snprintf(fresh, sizeof fresh, "%s/%s", dir, name[j]);
                snprintf(rel, sizeof rel, "io/malformed/%s", name[j]);
                size_t na = 0, nb = 0;
                unsigned char *a = slurp(fresh, &na), *b = slurp(tu_data_path(rel), &nb);
                if (!a || !b || na != nb || memcmp(a, b, na) != 0)
                    fail_msg("%s differs from the generator's output: regenerate the catalogue",
                             name[j]);
                free(a);
                free(b);
                files++;
            }
        }
        fclose(mf);
        size_t na = 0, nb = 0;
        snprintf(line, sizeof line, "io/malformed/%s", manifests[k]);
        unsigned char *a = slurp(mpath, &na), *b = slurp(tu_data_path(line), &nb);
        assert_true(a && b && na == nb && memcmp(a, b, na) == 0);
        free(a);
        free(b);
    }
    char cmd2[1200];
    snprintf(cmd2, sizeof cmd2, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd2), 0);
    assert_true(files >= 25);
}

int main(int argc, char **argv) {
    g_generator = argc > 1 ? argv[1] : NULL;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_catalogue), cmocka_unit_test(test_catalogue_mapped),
                                       cmocka_unit_test(test_idx_catalogue),
                                       cmocka_unit_test(test_catalogue_up_to_date)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
