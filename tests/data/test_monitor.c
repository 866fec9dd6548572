/* nn_monitor: the Prometheus text exposition format (checked line by line
 * by an independent checker below, escapes against hand-written text), the
 * atomic file, nn_fit's steps and epochs, prediction counts, and the HTTP
 * endpoint scraped with a plain socket (the curl scrape during a training
 * run is tests/data/monitor_scrape.py). */
#include "testutil.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------- an exposition-format checker */

static bool name_ok(const char *s, size_t n, bool colon) {
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(isalpha((unsigned char)c) || c == '_' || (colon && c == ':') ||
              (i > 0 && isdigit((unsigned char)c))))
            return false;
    }
    return true;
}

static bool value_ok(const char *s) {
    if (!strcmp(s, "NaN") || !strcmp(s, "+Inf") || !strcmp(s, "-Inf")) return true;
    char *end;
    strtod(s, &end);
    return end != s && *end == '\0';
}

/* Returns NULL when text is valid exposition text (0.0.4): HELP / TYPE
 * lines, each family's TYPE before its samples and at most once, samples
 * `name{l="v",...} value` with escapes \\ \" \n only; else what is wrong. */
static const char *check_exposition(const char *text, int *samples) {
    static char why[256];
    char typed[128][128];
    int ntyped = 0;
    *samples = 0;
    const char *line = text;
    if (*text && text[strlen(text) - 1] != '\n') return "text does not end with a newline";
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t n = (size_t)(eol - line);
        char buf[2048];
        if (n >= sizeof buf) return "line too long";
        memcpy(buf, line, n);
        buf[n] = '\0';
        line = eol + 1;
        if (n == 0) continue;
        if (buf[0] == '#') {
            char kw[8], name[128], rest[1024];
            int k = sscanf(buf, "# %7s %127s %1023[^\n]", kw, name, rest);
            if (k < 2) continue; /* a plain comment */
            if (!strcmp(kw, "TYPE")) {
                if (k != 3 || (strcmp(rest, "counter") && strcmp(rest, "gauge") &&
                               strcmp(rest, "histogram") && strcmp(rest, "summary") &&
                               strcmp(rest, "untyped")))
                    return snprintf(why, sizeof why, "bad TYPE line: %.200s", buf), why;
                for (int i = 0; i < ntyped; i++)
                    if (!strcmp(typed[i], name))
                        return snprintf(why, sizeof why, "second TYPE for %s", name), why;
                if (ntyped < 128) snprintf(typed[ntyped++], 128, "%s", name);
            } else if (!strcmp(kw, "HELP")) {
                for (const char *p = k == 3 ? rest : ""; *p; p++)
                    if (*p == '\\') {
                        if (p[1] != '\\' && p[1] != 'n')
                            return snprintf(why, sizeof why, "bad escape in HELP: %.200s", buf),
                                   why;
                        p++; /* the escaped character */
                    }
            }
            if (!name_ok(name, strlen(name), true))
                return snprintf(why, sizeof why, "bad metric name in: %.200s", buf), why;
            continue;
        }
        const char *p = buf;
        size_t nl = strcspn(p, "{ ");
        if (!name_ok(p, nl, true)) return snprintf(why, sizeof why, "bad sample name: %.200s", buf), why;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)nl, p);
        bool found = false;
        for (int i = 0; i < ntyped; i++) found = found || !strcmp(typed[i], name);
        if (!found) return snprintf(why, sizeof why, "sample before its TYPE: %.200s", buf), why;
        p += nl;
        if (*p == '{') {
            p++;
            while (*p != '}') {
                size_t ln = strcspn(p, "=");
                if (!name_ok(p, ln, false) || p[ln] != '=' || p[ln + 1] != '"')
                    return snprintf(why, sizeof why, "bad label in: %.200s", buf), why;
                p += ln + 2;
                while (*p && *p != '"') {
                    if (*p == '\n') return "raw newline in a label value";
                    if (*p == '\\') {
                        if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                            return snprintf(why, sizeof why, "bad escape in: %.200s", buf), why;
                        p++;
                    }
                    p++;
                }
                if (*p != '"') return "unterminated label value";
                p++;
                if (*p == ',') p++;
                else if (*p != '}') return snprintf(why, sizeof why, "bad label list: %.200s", buf), why;
            }
            p++;
        }
        if (*p != ' ') return snprintf(why, sizeof why, "no value: %.200s", buf), why;
        p++;
        char val[64], ts[64];
        int k = sscanf(p, "%63s %63s", val, ts);
        if (k < 1 || !value_ok(val)) return snprintf(why, sizeof why, "bad value: %.200s", buf), why;
        (*samples)++;
    }
    return NULL;
}

/* The value of the first sample of metric name in text (NaN if absent). */
static double value_of(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, name)); p += n)
        if ((p == text || p[-1] == '\n') && (p[n] == '{' || p[n] == ' ')) {
            const char *v = strchr(p, ' ');
            if (p[n] == '{') v = strchr(strstr(p, "} "), ' ');
            return strtod(v + 1, NULL);
        }
    return NAN;
}

static void assert_valid(const char *text) {
    int samples;
    const char *why = check_exposition(text, &samples);
    if (why) fail_msg("invalid exposition text: %s\n%s", why, text);
    assert_true(samples > 0);
}

/* The checker itself rejects what it should. */
static void test_checker(void **s) {
    (void)s;
    int n;
    assert_null(check_exposition("# TYPE a gauge\na{x=\"1\\\"2\"} 3\n", &n));
    assert_non_null(check_exposition("a 1\n", &n));                      /* no TYPE */
    assert_non_null(check_exposition("# TYPE a gauge\na{x=\"1\\q\"} 3\n", &n)); /* escape */
    assert_non_null(check_exposition("# TYPE a gauge\na{x=\"1} 3\n", &n));
    assert_non_null(check_exposition("# TYPE a gauge\na one\n", &n));
    assert_non_null(check_exposition("# TYPE 9a gauge\n9a 1\n", &n));
    assert_non_null(check_exposition("# TYPE a gauge\n# TYPE a gauge\na 1\n", &n));
}

/* ----------------------------------------------------------------- text */

static void test_text_and_escapes(void **s) {
    (void)s;
    nn_monitor *m = TU_NN(nn_monitor_new(NULL));
    TU_OK(nn_monitor_set_label(m, "job", "a\"b\\c\nd"));
    TU_OK(nn_monitor_set_gauge(m, "my_batch_size", "Batch\\size\nused", 64));
    char *t = TU_NN(nn_monitor_text(m));
    assert_valid(t);
    /* Hand-written: the label value and HELP text with their escapes. */
    assert_non_null(strstr(t, "# HELP my_batch_size Batch\\\\size\\nused\n"
                              "# TYPE my_batch_size gauge\n"
                              "my_batch_size{job=\"a\\\"b\\\\c\\nd\"} 64\n"));
    assert_non_null(strstr(t, "# TYPE nn_predictions_total counter\n"));
    assert_true(value_of(t, "nn_process_resident_memory_bytes") > 1e5);
    nn_free(t);
    /* Step and epoch values, NaN and infinities as the format spells them. */
    TU_OK(nn_monitor_record_step(m, 0.5, 32, 0.25));
    TU_OK(nn_monitor_record_step(m, 0.25, 16, 0.5));
    TU_OK(nn_monitor_record_epoch(m, 3, 0.375, NAN, INFINITY, 0.01, 2.0));
    t = TU_NN(nn_monitor_text(m));
    assert_valid(t);
    assert_true(value_of(t, "nn_train_steps_total") == 2);
    assert_true(value_of(t, "nn_train_samples_total") == 48);
    assert_true(value_of(t, "nn_train_samples_per_second") == 32);
    assert_true(value_of(t, "nn_train_step_seconds_total") == 0.75);
    assert_true(value_of(t, "nn_train_loss") == 0.25);
    assert_true(value_of(t, "nn_epoch") == 3);
    assert_non_null(strstr(t, "nn_val_loss{job=\"a\\\"b\\\\c\\nd\"} NaN\n"));
    assert_non_null(strstr(t, "nn_val_accuracy{job=\"a\\\"b\\\\c\\nd\"} +Inf\n"));
    nn_free(t);
    /* Bad input. */
    assert_int_equal(nn_monitor_set_label(m, "1x", "v"), NN_ERR_INVALID);
    assert_int_equal(nn_monitor_set_label(m, "__x", "v"), NN_ERR_INVALID);
    assert_int_equal(nn_monitor_set_gauge(m, "bad name", NULL, 1), NN_ERR_INVALID);
    assert_int_equal(nn_monitor_set_gauge(m, "nn_mine", NULL, 1), NN_ERR_INVALID);
    assert_int_equal(nn_monitor_record_step(m, 1, 1, 0), NN_ERR_INVALID);
    assert_int_equal(nn_monitor_record_step(m, 1, -1, 1), NN_ERR_INVALID);
    assert_int_equal(nn_monitor_write(m), NN_ERR_STATE);
    assert_int_equal(nn_monitor_port(m), -1);
    assert_int_equal(nn_last_status(), NN_ERR_STATE);
    nn_monitor_free(m);
}

/* -------------------------------------------------------- nn_fit + file */

static nn_dataset *blobs(int64_t n) {
    int64_t shape[2] = {n, 2};
    nn_generator *g = nn_generator_new(7);
    nn_tensor *x = nn_uniform(g, shape, 2, -1, 1);
    nn_tensor *y = nn_tensor_empty(NN_DTYPE_I64, &n, 1);
    const float *px = nn_tensor_data(x);
    for (int64_t i = 0; i < n; i++) ((int64_t *)nn_tensor_data(y))[i] = px[2 * i] > 0;
    nn_dataset *ds = TU_NN(nn_dataset_from_tensors(x, y));
    nn_tensor_free(x);
    nn_tensor_free(y);
    nn_generator_free(g);
    return ds;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_fit_writes_file(void **s) {
    (void)s;
    char dir[] = "/tmp/nn_monitor_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/metrics.prom", dir);
    nn_monitor *m = TU_NN(nn_monitor_new(path));
    TU_OK(nn_monitor_set_label(m, "job", "fit_test"));
    nn_dataset *train = blobs(200), *val = blobs(50);
    nn_loader *lt = TU_NN(nn_loader_new(train, 20, true, 1));
    nn_loader *lv = TU_NN(nn_loader_new(val, 25, false, 0));
    nn_module *net = TU_NN(nn_linear_new(2, 2, true));
    nn_tensor *ps[2] = {nn_module_parameter(net, 0, NULL), nn_module_parameter(net, 1, NULL)};
    nn_optim *opt = TU_NN(nn_sgd(ps, 2, 0.3, 0.0));
    TU_OK(nn_fit_set_monitor(m));
    TU_OK(nn_fit(net, opt, NN_FIT_LOSS_CROSS_ENTROPY, lt, lv, 3, 0, NULL, NULL, NULL, NULL));
    TU_OK(nn_fit_set_monitor(NULL));
    char *t = slurp(path);
    assert_non_null(t);
    assert_valid(t);
    assert_true(value_of(t, "nn_train_steps_total") == 30); /* 3 epochs x 10 batches */
    assert_true(value_of(t, "nn_train_samples_total") == 600);
    assert_true(value_of(t, "nn_epoch") == 2);
    assert_true(fabs(value_of(t, "nn_learning_rate") - 0.3) < 1e-12);
    assert_true(value_of(t, "nn_val_accuracy") > 0.8);
    assert_non_null(strstr(t, "nn_train_loss{job=\"fit_test\"} "));
    free(t);
    /* Only the file itself is left (the temporary was renamed). */
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_int_not_equal(access(tmp, F_OK), 0);
    /* A directory that does not exist: NN_ERR_IO, naming the path. */
    nn_monitor *bad = TU_NN(nn_monitor_new("/nonexistent_dir_nn/m.prom"));
    assert_int_equal(nn_monitor_write(bad), NN_ERR_IO);
    tu_expect_error(NN_ERR_IO, "/nonexistent_dir_nn/m.prom");
    nn_monitor_free(bad);
    /* Predictions are counted process-wide. */
    nn_model *model = NULL;
    void *data;
    size_t n;
    TU_OK(nn_model_save_buffer(net, NULL, NULL, &data, &n));
    model = TU_NN(nn_model_load_buffer(data, n, NULL));
    char *before = TU_NN(nn_monitor_text(m));
    double calls0 = value_of(before, "nn_predictions_total");
    double samples0 = value_of(before, "nn_predicted_samples_total");
    nn_free(before);
    int64_t sh[2] = {5, 2};
    nn_tensor *x = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, sh, 2));
    for (int i = 0; i < 3; i++) nn_tensor_free(TU_NN(nn_model_predict(model, x)));
    nn_tensor_free(x);
    char *after = TU_NN(nn_monitor_text(m));
    assert_true(value_of(after, "nn_predictions_total") - calls0 == 3);
    assert_true(value_of(after, "nn_predicted_samples_total") - samples0 == 15);
    nn_free(after);
    nn_model_free(model);
    nn_free(data);
    unlink(path);
    rmdir(dir);
    nn_monitor_free(m);
    nn_optim_free(opt);
    nn_module_free(net);
    nn_loader_free(lt);
    nn_loader_free(lv);
    nn_dataset_free(train);
    nn_dataset_free(val);
}

/* ---------------------------------------------------------------- HTTP */

/* GET path from 127.0.0.1:port; the whole response in a new string. */
static char *http_get(int64_t port, const char *path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = calloc(1, cap);
    ssize_t k;
    while ((k = read(fd, buf + len, cap - 1 - len)) > 0) len += (size_t)k;
    close(fd);
    return buf;
}

static void test_http(void **s) {
    (void)s;
    nn_monitor *m = TU_NN(nn_monitor_new(NULL));
    nn_status st = nn_monitor_serve(m, NULL, 0);
    if (st == NN_ERR_UNSUPPORTED) {
        nn_monitor_free(m);
        skip();
    }
    TU_OK(st);
    int64_t port = nn_monitor_port(m);
    assert_true(port > 0 && port < 65536);
    assert_int_equal(nn_monitor_serve(m, NULL, 0), NN_ERR_STATE);
    TU_OK(nn_monitor_record_step(m, 1.5, 8, 0.125));
    char *r = http_get(port, "/metrics");
    assert_non_null(strstr(r, "HTTP/1.0 200") ? strstr(r, "HTTP/1.0 200") : strstr(r, "HTTP/1.1 200"));
    assert_non_null(strstr(r, "text/plain; version=0.0.4"));
    char *body = strstr(r, "\r\n\r\n");
    assert_non_null(body);
    assert_valid(body + 4);
    assert_true(value_of(body + 4, "nn_train_samples_per_second") == 64);
    free(r);
    r = http_get(port, "/other");
    assert_non_null(strstr(r, " 404 "));
    free(r);
    nn_monitor_free(m); /* stops the server */
    nn_monitor *m2 = TU_NN(nn_monitor_new(NULL));
    assert_int_equal(nn_monitor_serve(m2, "not-an-address", 0), NN_ERR_INVALID);
    assert_int_equal(nn_monitor_serve(m2, NULL, 70000), NN_ERR_INVALID);
    nn_monitor_free(m2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker),
        cmocka_unit_test(test_text_and_escapes),
        cmocka_unit_test(test_fit_writes_file),
        cmocka_unit_test(test_http),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
