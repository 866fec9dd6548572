/* nn_monitor: training and inference metrics in the Prometheus text
 * exposition format (0.0.4), written atomically to a file and, with
 * libmicrohttpd, served on a loopback HTTP endpoint.
 *
 * One mutex guards a monitor's values; the HTTP server's thread renders
 * under it. The text is built fresh for each write or scrape: a few dozen
 * lines, cheaper than keeping it in sync. */
#include "nn_internal.h"
#include "train/nn_train_config.h"
#include "train/train_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#if NN_HAVE_HTTP
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#endif

#define MAX_LABELS 16
#define MAX_GAUGES 64
#define MAX_NAME 128
#define MAX_VALUE 1024
#define MAX_HELP 256
#define WRITE_INTERVAL_S 1.0

typedef struct gauge {
    char name[MAX_NAME], help[MAX_HELP];
    double value;
} gauge;

struct nn_monitor {
    nn__handle handle; /* NN__KIND_MONITOR */
    pthread_mutex_t lock;
    char *path;
    int nlabels, ngauges;
    char lname[MAX_LABELS][MAX_NAME], lvalue[MAX_LABELS][MAX_VALUE];
    gauge gauges[MAX_GAUGES];
    /* training */
    bool have_step, have_epoch;
    double loss, step_seconds, samples_per_second, step_seconds_sum;
    int64_t steps, samples;
    int64_t epoch;
    double epoch_loss, val_loss, val_acc, lr, epoch_seconds;
    double last_write;
    /* serving */
    void *daemon;
    int64_t port;
};
NN__HANDLE_FIRST(struct nn_monitor, handle);

static _Thread_local nn_monitor *tl_fit_monitor;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool check(const nn_monitor *m, const char *fn) {
    return nn__handle_check(m, NN__KIND_MONITOR, fn, "mon");
}

/* --------------------------------------------------------------- text */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->p && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *q = nn__realloc(b->p, cap);
        if (!q) {
            b->failed = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

/* A label value or HELP text with the exposition format's escapes:
 * backslash and newline always, the double quote in label values. */
static void sb_escaped(sbuf *b, const char *s, bool quote) {
    for (; *s; s++) {
        if (*s == '\\') sb_printf(b, "\\\\");
        else if (*s == '\n') sb_printf(b, "\\n");
        else if (*s == '"' && quote) sb_printf(b, "\\\"");
        else sb_printf(b, "%c", *s);
    }
}

static void sb_value(sbuf *b, double v) {
    if (isnan(v)) sb_printf(b, "NaN");
    else if (isinf(v)) sb_printf(b, v > 0 ? "+Inf" : "-Inf");
    else sb_printf(b, "%.17g", v);
}

static void sb_labels(sbuf *b, const nn_monitor *m) {
    if (!m->nlabels) return;
    sb_printf(b, "{");
    for (int i = 0; i < m->nlabels; i++) {
        sb_printf(b, "%s%s=\"", i ? "," : "", m->lname[i]);
        sb_escaped(b, m->lvalue[i], true);
        sb_printf(b, "\"");
    }
    sb_printf(b, "}");
}

static void sample(sbuf *b, const nn_monitor *m, const char *name, const char *type,
                   const char *help, double v) {
    sb_printf(b, "# HELP %s ", name);
    sb_escaped(b, help, false);
    sb_printf(b, "\n# TYPE %s %s\n%s", name, type, name);
    sb_labels(b, m);
    sb_printf(b, " ");
    sb_value(b, v);
    sb_printf(b, "\n");
}

/* Resident set size now and at its peak, in bytes (-1 if unknown). */
static void rss(double *now, double *peak) {
    *now = *peak = -1;
    long pages = 0, res = 0, page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) == 2 && page > 0) *now = (double)res * (double)page;
        fclose(f);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) *peak = (double)ru.ru_maxrss * 1024.0;
    if (*peak >= 0 && *peak < *now) *peak = *now; /* the kernel updates maxrss lazily */
}

/* The exposition text of m (lock held); NULL + NN_ERR_NOMEM. */
static char *render(const nn_monitor *m) {
    sbuf b = {0};
    if (m->have_step) {
        sample(&b, m, "nn_train_loss", "gauge", "Loss of the last training step.", m->loss);
        sample(&b, m, "nn_train_steps_total", "counter", "Training steps taken.",
               (double)m->steps);
        sample(&b, m, "nn_train_samples_total", "counter",
               "Training samples (images or tokens) processed.", (double)m->samples);
        sample(&b, m, "nn_train_step_seconds", "gauge", "Wall time of the last training step.",
               m->step_seconds);
        sample(&b, m, "nn_train_step_seconds_total", "counter",
               "Wall time of all training steps.", m->step_seconds_sum);
        sample(&b, m, "nn_train_samples_per_second", "gauge",
               "Training throughput of the last step (samples per second).",
               m->samples_per_second);
    }
    if (m->have_epoch) {
        sample(&b, m, "nn_epoch", "gauge", "Index of the last completed epoch (from 0).",
               (double)m->epoch);
        sample(&b, m, "nn_epoch_train_loss", "gauge", "Mean training loss of the last epoch.",
               m->epoch_loss);
        sample(&b, m, "nn_val_loss", "gauge", "Validation loss after the last epoch.",
               m->val_loss);
        sample(&b, m, "nn_val_accuracy", "gauge", "Validation accuracy after the last epoch.",
               m->val_acc);
        sample(&b, m, "nn_learning_rate", "gauge", "Learning rate of the first parameter group.",
               m->lr);
        sample(&b, m, "nn_epoch_seconds", "gauge", "Wall time of the last epoch.",
               m->epoch_seconds);
    }
    int64_t calls, served;
    nn__predictions(&calls, &served);
    sample(&b, m, "nn_predictions_total", "counter",
           "nn_model_predict calls in this process.", (double)calls);
    sample(&b, m, "nn_predicted_samples_total", "counter",
           "Samples served by nn_model_predict in this process.", (double)served);
    double now, peak;
    rss(&now, &peak);
    if (now >= 0)
        sample(&b, m, "nn_process_resident_memory_bytes", "gauge",
               "Resident memory of the process.", now);
    if (peak >= 0)
        sample(&b, m, "nn_process_resident_memory_peak_bytes", "gauge",
               "Peak resident memory of the process.", peak);
    for (int i = 0; i < m->ngauges; i++)
        sample(&b, m, m->gauges[i].name, "gauge", m->gauges[i].help, m->gauges[i].value);
    sb_printf(&b, "%s", ""); /* a terminated buffer even when empty */
    if (b.failed) {
        nn__free(b.p);
        nn__err(NN_ERR_NOMEM, "nn_monitor: out of memory rendering the metrics");
        return NULL;
    }
    return b.p;
}

/* ---------------------------------------------------------- the file */

/* Write text to m->path through "<path>.tmp.<pid>" and rename (lock held). */
static nn_status write_file(nn_monitor *m, const char *fn) {
    char *text = render(m);
    if (!text) return nn_last_status();
    size_t n = strlen(m->path) + 32;
    char *tmp = nn__malloc(n);
    nn_status st = tmp ? NN_OK : NN_ERR_NOMEM;
    if (!st) snprintf(tmp, n, "%s.tmp.%ld", m->path, (long)getpid());
    int fd = st ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (!st && fd < 0)
        st = nn__err(NN_ERR_IO, "%s: cannot create '%s': %s", fn, tmp, strerror(errno));
    size_t len = strlen(text), off = 0;
    while (!st && off < len) {
        ssize_t k = write(fd, text + off, len - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) st = nn__err(NN_ERR_IO, "%s: writing '%s' failed: %s", fn, tmp, strerror(errno));
        else off += (size_t)k;
    }
    if (fd >= 0 && close(fd) != 0 && !st)
        st = nn__err(NN_ERR_IO, "%s: closing '%s' failed: %s", fn, tmp, strerror(errno));
    if (!st && rename(tmp, m->path) != 0)
        st = nn__err(NN_ERR_IO, "%s: renaming '%s' to '%s' failed: %s", fn, tmp, m->path,
                     strerror(errno));
    if (st && fd >= 0) unlink(tmp);
    nn__free(tmp);
    nn__free(text);
    if (!st) m->last_write = now_s();
    return st;
}

/* ---------------------------------------------------------- the API */

nn_monitor *nn_monitor_new(const char *path) {
    const char *fn = "nn_monitor_new";
    if (path && !*path) {
        nn__err(NN_ERR_INVALID, "%s: path is empty", fn);
        return NULL;
    }
    nn_monitor *m = nn__calloc(1, sizeof *m);
    if (!m) return NULL;
    if (path && !(m->path = nn__strdup(path))) {
        nn__free(m);
        return NULL;
    }
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        nn__free(m->path);
        nn__free(m);
        nn__err(NN_ERR_NOMEM, "%s: cannot create a mutex", fn);
        return NULL;
    }
    m->port = -1;
    nn__handle_set(&m->handle, NN__KIND_MONITOR);
    nn__ok();
    return m;
}

static void stop_server(nn_monitor *m);

void nn_monitor_free(nn_monitor *mon) {
    if (!mon || !check(mon, "nn_monitor_free")) return;
    if (tl_fit_monitor == mon) tl_fit_monitor = NULL;
    stop_server(mon); /* the server thread has finished before anything goes */
    nn__handle_clear(&mon->handle);
    pthread_mutex_destroy(&mon->lock);
    nn__free(mon->path);
    nn__free(mon);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* (colons only for metric names), < MAX_NAME. */
static bool valid_name(const char *s, bool colon) {
    size_t n = strlen(s);
    if (n == 0 || n >= MAX_NAME) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

nn_status nn_monitor_set_label(nn_monitor *mon, const char *name, const char *value) {
    const char *fn = "nn_monitor_set_label";
    if (!check(mon, fn) || !nn__check_ptr(name, fn, "name") || !nn__check_ptr(value, fn, "value"))
        return nn_last_status();
    if (!valid_name(name, false) || !strncmp(name, "__", 2))
        return nn__err(NN_ERR_INVALID,
                       "%s: label name '%.64s' is not [a-zA-Z_][a-zA-Z0-9_]* (under %d "
                       "characters, no leading \"__\")",
                       fn, name, MAX_NAME);
    if (strlen(value) >= MAX_VALUE)
        return nn__err(NN_ERR_LIMIT, "%s: label value of %zu bytes (limit %d)", fn, strlen(value),
                       MAX_VALUE - 1);
    pthread_mutex_lock(&mon->lock);
    int i = 0;
    while (i < mon->nlabels && strcmp(mon->lname[i], name) != 0) i++;
    nn_status st = NN_OK;
    if (i == mon->nlabels && mon->nlabels == MAX_LABELS)
        st = nn__err(NN_ERR_LIMIT, "%s: more than %d labels", fn, MAX_LABELS);
    if (!st) {
        snprintf(mon->lname[i], MAX_NAME, "%s", name);
        snprintf(mon->lvalue[i], MAX_VALUE, "%s", value);
        if (i == mon->nlabels) mon->nlabels++;
    }
    pthread_mutex_unlock(&mon->lock);
    return st ? st : nn__ok();
}

nn_status nn_monitor_set_gauge(nn_monitor *mon, const char *name, const char *help,
                               double value) {
    const char *fn = "nn_monitor_set_gauge";
    if (!check(mon, fn) || !nn__check_ptr(name, fn, "name")) return nn_last_status();
    if (!valid_name(name, true))
        return nn__err(NN_ERR_INVALID, "%s: metric name '%.64s' is not [a-zA-Z_:][a-zA-Z0-9_:]*",
                       fn, name);
    if (!strncmp(name, "nn_", 3))
        return nn__err(NN_ERR_INVALID, "%s: the prefix nn_ of '%.64s' is libnn's own", fn, name);
    pthread_mutex_lock(&mon->lock);
    int i = 0;
    while (i < mon->ngauges && strcmp(mon->gauges[i].name, name) != 0) i++;
    nn_status st = NN_OK;
    if (i == mon->ngauges && mon->ngauges == MAX_GAUGES)
        st = nn__err(NN_ERR_LIMIT, "%s: more than %d gauges", fn, MAX_GAUGES);
    if (!st) {
        gauge *g = &mon->gauges[i];
        snprintf(g->name, MAX_NAME, "%s", name);
        snprintf(g->help, MAX_HELP, "%s", help ? help : name);
        g->value = value;
        if (i == mon->ngauges) mon->ngauges++;
    }
    pthread_mutex_unlock(&mon->lock);
    return st ? st : nn__ok();
}

nn_status nn_monitor_record_step(nn_monitor *mon, double loss, int64_t samples, double seconds) {
    const char *fn = "nn_monitor_record_step";
    if (!check(mon, fn)) return nn_last_status();
    if (samples < 0 || !(seconds > 0) || isinf(seconds))
        return nn__err(NN_ERR_INVALID, "%s: samples %lld must be >= 0 and seconds %g > 0", fn,
                       (long long)samples, seconds);
    pthread_mutex_lock(&mon->lock);
    mon->have_step = true;
    mon->loss = loss;
    mon->steps++;
    mon->samples += samples;
    mon->step_seconds = seconds;
    mon->step_seconds_sum += seconds;
    mon->samples_per_second = (double)samples / seconds;
    nn_status st = NN_OK;
    if (mon->path && now_s() - mon->last_write >= WRITE_INTERVAL_S) st = write_file(mon, fn);
    pthread_mutex_unlock(&mon->lock);
    return st ? st : nn__ok();
}

nn_status nn_monitor_record_epoch(nn_monitor *mon, int64_t epoch, double train_loss,
                                  double val_loss, double val_accuracy, double lr,
                                  double seconds) {
    const char *fn = "nn_monitor_record_epoch";
    if (!check(mon, fn)) return nn_last_status();
    if (epoch < 0) return nn__err(NN_ERR_INVALID, "%s: epoch %lld < 0", fn, (long long)epoch);
    pthread_mutex_lock(&mon->lock);
    mon->have_epoch = true;
    mon->epoch = epoch;
    mon->epoch_loss = train_loss;
    mon->val_loss = val_loss;
    mon->val_acc = val_accuracy;
    mon->lr = lr;
    mon->epoch_seconds = seconds;
    nn_status st = mon->path ? write_file(mon, fn) : NN_OK;
    pthread_mutex_unlock(&mon->lock);
    return st ? st : nn__ok();
}

char *nn_monitor_text(nn_monitor *mon) {
    if (!check(mon, "nn_monitor_text")) return NULL;
    pthread_mutex_lock(&mon->lock);
    char *t = render(mon);
    pthread_mutex_unlock(&mon->lock);
    if (t) nn__ok();
    return t;
}

nn_status nn_monitor_write(nn_monitor *mon) {
    const char *fn = "nn_monitor_write";
    if (!check(mon, fn)) return nn_last_status();
    if (!mon->path) return nn__err(NN_ERR_STATE, "%s: the monitor has no file path", fn);
    pthread_mutex_lock(&mon->lock);
    nn_status st = write_file(mon, fn);
    pthread_mutex_unlock(&mon->lock);
    return st ? st : nn__ok();
}

nn_status nn_fit_set_monitor(nn_monitor *mon) {
    if (mon && !check(mon, "nn_fit_set_monitor")) return nn_last_status();
    tl_fit_monitor = mon;
    return nn__ok();
}

nn_monitor *nn__fit_monitor(void) { return tl_fit_monitor; }

/* ------------------------------------------------------------- HTTP */

#if NN_HAVE_HTTP

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls) {
    (void)version, (void)upload, (void)upload_size, (void)con_cls;
    nn_monitor *m = cls;
    const char *body = "not found\n";
    unsigned code = MHD_HTTP_NOT_FOUND;
    char *text = NULL;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        body = "method not allowed\n";
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
    } else if (!strcmp(url, "/metrics") || !strcmp(url, "/")) {
        pthread_mutex_lock(&m->lock);
        text = render(m);
        pthread_mutex_unlock(&m->lock);
        body = text ? text : "out of memory\n";
        code = text ? MHD_HTTP_OK : MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    nn__free(text);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            code == MHD_HTTP_OK ? "text/plain; version=0.0.4; charset=utf-8"
                                                : "text/plain");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

nn_status nn_monitor_serve(nn_monitor *mon, const char *address, int64_t port) {
    const char *fn = "nn_monitor_serve";
    if (!check(mon, fn)) return nn_last_status();
    if (port < 0 || port > 65535)
        return nn__err(NN_ERR_INVALID, "%s: port %lld outside [0, 65535]", fn, (long long)port);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    const char *addr = address ? address : "127.0.0.1";
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        return nn__err(NN_ERR_INVALID, "%s: '%.64s' is not an IPv4 address", fn, addr);
    pthread_mutex_lock(&mon->lock);
    bool serving = mon->daemon != NULL;
    pthread_mutex_unlock(&mon->lock);
    if (serving) return nn__err(NN_ERR_STATE, "%s: already serving on port %lld", fn, (long long)mon->port);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)port, NULL, NULL, answer, mon,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, 16u,
        MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!d)
        return nn__err(NN_ERR_IO, "%s: cannot serve on %s:%lld (in use, or not allowed)", fn,
                       addr, (long long)port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    pthread_mutex_lock(&mon->lock);
    mon->daemon = d;
    mon->port = info && info->port ? info->port : port;
    pthread_mutex_unlock(&mon->lock);
    return nn__ok();
}

static void stop_server(nn_monitor *m) {
    if (m->daemon) MHD_stop_daemon(m->daemon); /* joins the server thread */
    m->daemon = NULL;
    m->port = -1;
}

#else

nn_status nn_monitor_serve(nn_monitor *mon, const char *address, int64_t port) {
    (void)address, (void)port;
    if (!check(mon, "nn_monitor_serve")) return nn_last_status();
    return nn__err(NN_ERR_UNSUPPORTED,
                   "nn_monitor_serve: this build of libnn has no libmicrohttpd (build option "
                   "'http'); the file path works");
}

static void stop_server(nn_monitor *m) { (void)m; }

#endif

int64_t nn_monitor_port(const nn_monitor *mon) {
    if (!check(mon, "nn_monitor_port")) return -1;
    nn_monitor *m = (nn_monitor *)(uintptr_t)mon;
    pthread_mutex_lock(&m->lock);
    int64_t p = m->port;
    pthread_mutex_unlock(&m->lock);
    if (p < 0) nn__err(NN_ERR_STATE, "nn_monitor_port: the monitor is not serving");
    else nn__ok();
    return p;
}
