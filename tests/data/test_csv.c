/* CSV reader: embedded NUL bytes, a UTF-8 byte-order mark, RFC 4180 quoting
 * (doubled quotes, delimiters and newlines inside quotes) and malformed
 * quoting, each file written byte for byte by the test; the expected values
 * are the ones written. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];

static int setup_dir(void **s) {
    (void)s;
    snprintf(g_dir, sizeof g_dir, "/tmp/nn_csv_test_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **s) {
    (void)s;
    DIR *d = opendir(g_dir);
    struct dirent *e;
    char p[600];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        if (unlink(p) != 0) rmdir(p);
    }
    if (d) closedir(d);
    rmdir(g_dir);
    return 0;
}

/* Write n bytes to g_dir/name; returns the path (static buffer). */
static const char *put(const char *name, const char *bytes, size_t n) {
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    fclose(f);
    return path;
}
#define PUT(name, lit) put(name, lit, sizeof lit - 1) /* keeps embedded NULs */

static nn_dataset *load(const char *path, bool header, char delim, int label_col,
                        nn_csv_policy policy) {
    return nn_dataset_from_csv(path, header, delim, label_col >= 0, label_col >= 0 ? label_col : 0,
                               policy, -7, NULL, NULL);
}

/* Check x [rows, cols] and labels of ds against want / labels. */
static void check(nn_dataset *ds, int64_t rows, int64_t cols, const float *want,
                  const int64_t *labels) {
    assert_non_null(ds);
    assert_int_equal(nn_dataset_len(ds), rows);
    int64_t shape[2];
    assert_int_equal(nn_dataset_sample_shape(ds, shape, 2), 1);
    assert_int_equal(shape[0], cols);
    for (int64_t i = 0; i < rows; i++) {
        nn_tensor *x, *y;
        TU_OK(nn_dataset_get(ds, i, &x, &y));
        const float *v = nn_tensor_data(x);
        for (int64_t j = 0; j < cols; j++) assert_float_equal(v[j], want[i * cols + j], 0);
        if (labels) assert_int_equal((int64_t)nn_tensor_item(y), labels[i]);
        nn_tensor_free(x);
        nn_tensor_free(y);
    }
    nn_dataset_free(ds);
}

static const nn_csv_policy policies[] = {NN_CSV_POLICY_ERROR, NN_CSV_POLICY_DROP,
                                         NN_CSV_POLICY_FILL};

/* ------------------------------------------------------------ NUL bytes */

static void test_nul_is_an_error(void **s) {
    (void)s;
    /* The old reader stopped the line at the NUL: 2 features, no error. */
    const char *p = PUT("nul.csv", "1,0.5,2\0,99\n3,4,5,6\n");
    for (int k = 0; k < 3; k++) {
        assert_null(load(p, false, ',', -1, policies[k]));
        tu_expect_error(NN_ERR_FORMAT, "nn_dataset_from_csv: line 1 column 2: embedded NUL byte");
    }
    p = PUT("nul-later.csv", "a,b\n1,2\n3,\0\n");
    assert_null(load(p, true, ',', -1, NN_CSV_POLICY_FILL));
    tu_expect_error(NN_ERR_FORMAT, "line 3 column 1: embedded NUL byte");
    p = PUT("nul-quoted.csv", "1,\"2\0\"\n");
    assert_null(load(p, false, ',', -1, NN_CSV_POLICY_DROP));
    tu_expect_error(NN_ERR_FORMAT, "line 1 column 1: embedded NUL byte");
    p = PUT("nul-header.csv", "a\0b,c\n1,2\n");
    assert_null(load(p, true, ',', -1, NN_CSV_POLICY_ERROR));
    tu_expect_error(NN_ERR_FORMAT, "line 1 column 0: embedded NUL byte");
}

/* ---------------------------------------------------- byte-order mark */

static void test_bom_skipped(void **s) {
    (void)s;
    const float want[] = {1, 2, 3, 4};
    const int64_t labels[] = {0, 1};
    /* Header-less: the old reader saw "\xef\xbb\xbf1" as a bad cell. */
    const char *p = PUT("bom.csv", "\xef\xbb\xbf" "1,2,0\n3,4,1\n");
    check(load(p, false, ',', 2, NN_CSV_POLICY_ERROR), 2, 2, want, labels);
    p = PUT("bom-header.csv", "\xef\xbb\xbf" "a,b,label\r\n1,2,0\r\n3,4,1\r\n");
    check(load(p, true, ',', 2, NN_CSV_POLICY_ERROR), 2, 2, want, labels);
    p = PUT("bom-quoted.csv", "\xef\xbb\xbf\"1\",2,0\n3,4,1\n");
    check(load(p, false, ',', 2, NN_CSV_POLICY_ERROR), 2, 2, want, labels);
    /* Only at the start of the file: elsewhere it is a bad cell. */
    p = PUT("bom-later.csv", "1,2,0\n\xef\xbb\xbf" "3,4,1\n");
    assert_null(load(p, false, ',', 2, NN_CSV_POLICY_ERROR));
    tu_expect_error(NN_ERR_FORMAT, "line 2 column 0");
    /* A file of just a BOM is empty. */
    p = PUT("bom-only.csv", "\xef\xbb\xbf");
    assert_null(load(p, false, ',', -1, NN_CSV_POLICY_ERROR));
    tu_expect_error(NN_ERR_FORMAT, "the file is empty");
}

/* ------------------------------------------------------------- quoting */

static void test_quoted_fields(void **s) {
    (void)s;
    /* The header's cells hold a delimiter, doubled quotes and a newline
     * (the old reader counted 6 header fields and failed). */
    const char *p = PUT("quoted.csv", "\"size, cm\",\"the \"\"best\"\" one\",\"two\nlines\",label\n"
                                      "\"1.5\",2,\"3\",\"0\"\r\n"
                                      " \"-4e1\" ,\t\"5\"\t,6,1\n"
                                      "\"\",8,\"9,5\",2\n"
                                      "\"7\n\",8,9,2\n");
    const float want_fill[] = {1.5f, 2, 3, -40, 5, 6, -7, 8, -7, -7, 8, 9};
    const int64_t labels_fill[] = {0, 1, 2, 2};
    int64_t dropped = -1, filled = -1;
    nn_dataset *ds = nn_dataset_from_csv(p, true, ',', true, 3, NN_CSV_POLICY_FILL, -7, &dropped,
                                         &filled);
    assert_int_equal(dropped, 0);
    assert_int_equal(filled, 2);
    check(ds, 4, 3, want_fill, labels_fill);
    /* DROP: the last two rows go ("" and "9,5" and "7\n" are not numbers). */
    ds = TU_NN(nn_dataset_from_csv(p, true, ',', true, 3, NN_CSV_POLICY_DROP, 0, &dropped, NULL));
    assert_int_equal(dropped, 2);
    check(ds, 2, 3, want_fill, labels_fill);
    /* ERROR names the first bad cell; its line counts the header's newline. */
    assert_null(load(p, true, ',', 3, NN_CSV_POLICY_ERROR));
    tu_expect_error(NN_ERR_FORMAT, "line 5 column 0: '' is not a number");

    /* Another delimiter; quoted delimiters and newlines do not split rows. */
    p = PUT("quoted-semi.csv", "\"a;b\";c\n\"1\";\"2\"\n\"3\";4\n");
    const float want_semi[] = {1, 2, 3, 4};
    check(load(p, true, ';', -1, NN_CSV_POLICY_ERROR), 2, 2, want_semi, NULL);
    /* A quoted empty line is a record, not a blank line. */
    p = PUT("quoted-empty.csv", "a\n1\n\n\"\"\n2\n");
    const float want_empty[] = {1, -7, 2};
    check(load(p, true, ',', -1, NN_CSV_POLICY_FILL), 3, 1, want_empty, NULL);
}

static void test_malformed_quoting(void **s) {
    (void)s;
    const struct {
        const char *name, *bytes, *message;
    } cases[] = {
        {"unclosed.csv", "1,2\n3,\"4\n5,6\n", "line 2 column 1: the quoted field is not closed"},
        {"after-quote.csv", "1,\"2\"x\n", "line 1 column 1: unexpected byte 0x78 ('x') after a"},
        {"two-quoted.csv", "\"1\" \"2\",3\n", "line 1 column 0: unexpected byte 0x22"},
        {"inner-quote.csv", "1,2\n3,4\"5\n", "line 2 column 1: a quote inside an unquoted field"},
        {"header-quote.csv", "a,\"b\n", "line 1 column 1: the quoted field is not closed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = put(cases[i].name, cases[i].bytes, strlen(cases[i].bytes));
        for (int k = 0; k < 3; k++) { /* structure errors fail under every policy */
            assert_null(load(p, false, ',', -1, policies[k]));
            tu_expect_error(NN_ERR_FORMAT, cases[i].message);
        }
    }
}

/* A cell longer than the reader keeps is not a number; its message is cut. */
static void test_long_cell(void **s) {
    (void)s;
    size_t n = 10000;
    char *bytes = malloc(n + 16);
    memcpy(bytes, "1,", 2);
    memset(bytes + 2, '5', n);
    memcpy(bytes + 2 + n, "\n2,3\n", 5);
    const char *p = put("long.csv", bytes, n + 7);
    free(bytes);
    assert_null(load(p, false, ',', -1, NN_CSV_POLICY_ERROR));
    assert_non_null(strstr(nn_last_error(), "5555...' is not a number"));
    tu_expect_error(NN_ERR_FORMAT, "line 1 column 1: '5555555555");
    const float want[] = {1, -7, 2, 3};
    check(load(p, false, ',', -1, NN_CSV_POLICY_FILL), 2, 2, want, NULL);
}

/* The reader reads the file twice: a directory or FIFO is refused. */
static void test_not_a_regular_file(void **s) {
    (void)s;
    assert_null(load(g_dir, false, ',', -1, NN_CSV_POLICY_ERROR));
    tu_expect_error(NN_ERR_IO, "is not a regular file");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nul_is_an_error),
        cmocka_unit_test(test_bom_skipped),
        cmocka_unit_test(test_quoted_fields),
        cmocka_unit_test(test_malformed_quoting),
        cmocka_unit_test(test_long_cell),
        cmocka_unit_test(test_not_a_regular_file),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
