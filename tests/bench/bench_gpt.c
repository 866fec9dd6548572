/* GPT benchmark (never a unit test). Lines:
 *     BENCH <case> <threads> <value> <unit>
 *
 * gpt_mini_train: ms per training step (forward, cross-entropy, backward,
 *   AdamW) of the mini GPT of the Transformers issue (4 layers, 4 heads, 256
 *   channels, vocabulary 256, batch 8, sequence 128), median of the steps
 *   after a warm-up, at 1 and 2 threads. With --torch, PyTorch runs the
 *   identical model (tests/bench/bench_gpt_torch.py, /usr/bin/python3) in
 *   the same run, rounds interleaved with libnn's so both see the same load;
 *   the ratio line is PyTorch's median / libnn's (> 1: libnn is faster).
 * gpt2_124m_train: the same for GPT-2 124M (vocabulary 50257, context 1024,
 *   12 layers, 12 heads, 768 channels) at batch 4, sequence 64 (llm.c's CPU
 *   configuration), 2 threads by default (--threads-124m). With --llmc DIR
 *   (a checkout of github.com/karpathy/llm.c, not part of libnn), llm.c's
 *   train_gpt2.c is built outside the repository and run on random weights
 *   by tests/bench/bench_llmc.py in the same rounds: a third line and ratio.
 * <case>_profile: with --profile, one step split into forward, backward
 *   and optimizer (ms, median), then the library profiler's report of one
 *   step on stderr.
 * gpt_mini_decode, gpt2_124m_decode: tokens/s of a session generating with the KV cache
 *   (batch 1, greedy, after a 16-token prefill), by wall time and by CPU
 *   time (x threads: what the wall rate would be on cores of its own), the
 *   memory bandwidth measured in the same run (a streaming read of 1 GiB,
 *   over CPU time), the bound it sets (bandwidth / bytes of the weights read
 *   per token) and the fraction of it reached. The mini model's 13 MB of
 *   weights stay in cache, so it can pass the DRAM bound.
 *   Each runs for f32, bf16 and f16 weights (nn_module_convert, saved and
 *   loaded natively; lines <case>_bf16, <case>_f16), rounds interleaved
 *   (--rounds-decode, 5), and <case>_bf16_ratio / _f16_ratio: the half
 *   model's tokens/s over f32's (issue 14: >= 1.7x for GPT-2 124M; the
 *   bound halves with the bytes). Also int8 projections (nn_quantize_dynamic:
 *   c_attn, c_proj, c_fc, mlp c_proj) with the tied head / embeddings f32
 *   (<case>_int8) or converted to bf16 after quantizing (<case>_int8_bf16),
 *   with their ratios to f32; their bound counts 1 byte per projection weight.
 *
 * Usage: bench_gpt [--torch SCRIPT] [--llmc DIR [--llmc-script PY]] [--steps N]
 *                  [--rounds N] [--steps-124m N] [--rounds-124m N] [--profile]
 *                  [--no-mini] [--no-124m] [--no-decode] [--no-train]
 *                  [--threads LIST] [--threads-124m LIST] [--rounds-decode N]
 * (LIST: e.g. 1,2) */
#include "nn.h"
#include "bench_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

enum { V = 256, T = 128, B = 8, L = 4, H = 4, C = 256 };

/* A training configuration: model and batch. */
typedef struct train_cfg {
    const char *name; /* the BENCH case */
    const char *torch_cfg; /* bench_gpt_torch.py --config */
    int64_t vocab, block, layers, heads, channels, batch, seq;
} train_cfg;

static const train_cfg cfg_mini = {"gpt_mini_train", "mini", V, T, L, H, C, B, T};
/* GPT-2 124M at llm.c's CPU configuration (batch 4, sequence 64) */
static const train_cfg cfg_124m = {"gpt2_124m_train", "124m", 50257, 1024, 12, 12, 768, 4, 64};

typedef struct trainer {
    const train_cfg *cfg;
    nn_module *gpt;
    nn_optim *opt;
    nn_tensor *x, *y;
} trainer;

static trainer trainer_new(const train_cfg *c) {
    trainer t;
    t.cfg = c;
    nn_gpt_config cfg;
    nn_gpt_config_init(&cfg);
    cfg.vocab_size = c->vocab;
    cfg.block_size = c->block;
    cfg.n_layer = c->layers;
    cfg.n_head = c->heads;
    cfg.n_embd = c->channels;
    nn_generator_seed(NULL, 1);
    t.gpt = nn_gpt_new(&cfg);
    if (!t.gpt) bench_die("nn_gpt_new");
    int64_t np = nn_module_num_parameters(t.gpt);
    nn_tensor **ps = malloc(sizeof *ps * (size_t)np);
    if (!ps) bench_die("malloc");
    for (int64_t i = 0; i < np; i++) ps[i] = nn_module_parameter(t.gpt, i, NULL);
    t.opt = nn_adamw(ps, np, 3e-4, 0.1);
    free(ps);
    if (!t.opt) bench_die("nn_adamw");
    nn_generator *g = nn_generator_new(7);
    const int64_t n = c->batch * c->seq;
    int64_t s[2] = {c->batch, c->seq};
    int64_t *xs = malloc(sizeof *xs * (size_t)n), *ys = malloc(sizeof *ys * (size_t)n);
    if (!xs || !ys) bench_die("malloc");
    for (int64_t i = 0; i < n; i++) {
        xs[i] = (int64_t)(nn_generator_next(g) % (uint64_t)c->vocab);
        ys[i] = (int64_t)(nn_generator_next(g) % (uint64_t)c->vocab);
    }
    t.x = nn_tensor_from_data(NN_DTYPE_I64, s, 2, xs);
    t.y = nn_tensor_from_data(NN_DTYPE_I64, &n, 1, ys);
    free(xs);
    free(ys);
    nn_generator_free(g);
    return t;
}

static void trainer_free(trainer *t) {
    nn_tensor_free(t->x);
    nn_tensor_free(t->y);
    nn_optim_free(t->opt);
    nn_module_free(t->gpt);
}

/* One step; times of its three phases added to ph[0..3) when ph. */
static void train_step(trainer *t, double *ph) {
    nn_scope *sc = nn_scope_begin();
    double t0 = bench_now_s();
    nn_optim_zero_grad(t->opt);
    int64_t s2[2] = {t->cfg->batch * t->cfg->seq, t->cfg->vocab};
    nn_tensor *loss = nn_cross_entropy(nn_reshape(nn_module_forward(t->gpt, t->x), s2, 2), t->y);
    if (!loss) bench_die("forward");
    double t1 = bench_now_s();
    if (nn_backward(loss)) bench_die("backward");
    double t2 = bench_now_s();
    if (nn_optim_step(t->opt)) bench_die("step");
    double t3 = bench_now_s();
    nn_scope_end(sc);
    if (ph) {
        ph[0] = 1e3 * (t1 - t0);
        ph[1] = 1e3 * (t2 - t1);
        ph[2] = 1e3 * (t3 - t2);
    }
}

/* Median ms/step of `steps` steps after 2 warm-up steps: wall time, and
 * the process's CPU time in *cpu (on a shared host the 1-thread CPU time is
 * the steady figure: it does not count time spent waiting for a core). */
static double libnn_round(trainer *t, int steps, double *cpu) {
    double v[256], c[256];
    for (int i = 0; i < 2; i++) train_step(t, NULL);
    if (steps > 64) steps = 64;
    for (int i = 0; i < steps; i++) {
        double a = bench_now_s(), ac = bench_process_cpu_s();
        train_step(t, NULL);
        v[i] = 1e3 * (bench_now_s() - a);
        c[i] = 1e3 * (bench_process_cpu_s() - ac);
    }
    *cpu = bench_median(c, steps);
    return bench_median(v, steps);
}

/* PyTorch's medians, from the script's "MEDIAN_MS wall cpu" line. */
static double ref_round(const char *cmd, double *cpu) {
    FILE *p = popen(cmd, "r");
    *cpu = NAN;
    if (!p) return NAN;
    char line[512];
    double ms = NAN;
    while (fgets(line, sizeof line, p))
        if (!strncmp(line, "MEDIAN_MS ", 10)) {
            char *end;
            ms = strtod(line + 10, &end);
            *cpu = strtod(end, NULL);
        }
    pclose(p);
    return ms;
}

/* The reference scripts' command lines for one round. */
static double torch_round(const char *script, const train_cfg *c, int threads, int steps,
                          double *cpu) {
    char cmd[1024];
    /* torch.set_num_threads alone leaves Debian's build a second busy OpenMP
     * thread (process CPU twice the wall time at --threads 1): bound the
     * OpenMP and BLAS pools too, so "N threads" is N cores for both sides. */
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=%d OPENBLAS_NUM_THREADS=%d /usr/bin/python3 %s --config %s "
             "--threads %d --steps %d 2>&1",
             threads, threads, script, c->torch_cfg, threads, steps);
    return ref_round(cmd, cpu);
}

static double llmc_round(const char *script, const char *llmc, int threads, int steps,
                         double *cpu) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s --llmc '%s' --threads %d --steps %d 2>&1",
             script, llmc, threads, steps > 9 ? 9 : steps);
    return ref_round(cmd, cpu);
}

/* One reference's medians over the rounds, and the ratio line. */
static void ref_report(const char *name, const char *who, int th, const double *ms,
                       const double *cpu, int n, double mine, double mine_c) {
    if (!n) return;
    double a[16], b[16];
    memcpy(a, ms, sizeof *a * (size_t)n);
    memcpy(b, cpu, sizeof *b * (size_t)n);
    double pm = bench_median(a, n), pc = bench_median(b, n);
    printf("BENCH %s_%s %d %.1f ms/step (cpu %.1f ms)\n", name, who, th, pm, pc);
    printf("BENCH %s_ratio_%s %d %.2f x wall, %.2f x cpu (%s / libnn, >1: libnn faster)\n", name,
           who, th, pm / mine, pc / mine_c, who);
}

static void bench_train(const train_cfg *c, const char *torch, const char *llmc_script,
                        const char *llmc, const int *threads, int nthreads, int steps, int rounds,
                        bool profile) {
    trainer t = trainer_new(c);
    for (int ti = 0; ti < nthreads; ti++) {
        int th = threads[ti];
        nn_set_num_threads(th);
        double mine[16], mine_c[16], ref[16], ref_c[16], lc[16], lc_c[16];
        int nref = 0, nlc = 0;
        for (int r = 0; r < rounds; r++) {
            mine[r] = libnn_round(&t, steps, &mine_c[r]);
            double cc, ms;
            if (torch && isfinite(ms = torch_round(torch, c, th, steps, &cc))) {
                ref_c[nref] = cc;
                ref[nref++] = ms;
            }
            if (llmc && isfinite(ms = llmc_round(llmc_script, llmc, th, steps, &cc))) {
                lc_c[nlc] = cc;
                lc[nlc++] = ms;
            }
        }
        double m = bench_median(mine, rounds), mc = bench_median(mine_c, rounds);
        printf("BENCH %s %d %.1f ms/step (cpu %.1f ms)\n", c->name, th, m, mc);
        ref_report(c->name, "torch", th, ref, ref_c, nref, m, mc);
        ref_report(c->name, "llmc", th, lc, lc_c, nlc, m, mc);
        if (profile) {
            double ph[3][64], one[3];
            int n = steps > 64 ? 64 : steps;
            for (int i = 0; i < n; i++) {
                train_step(&t, one);
                for (int k = 0; k < 3; k++) ph[k][i] = one[k];
            }
            printf("BENCH %s_profile %d forward %.1f backward %.1f adamw %.1f ms\n", c->name, th,
                   bench_median(ph[0], n), bench_median(ph[1], n), bench_median(ph[2], n));
            /* one more step under the library's profiler: the report on stderr */
            if (nn_profiler_start(0) == NN_OK) {
                train_step(&t, NULL);
                nn_profiler_stop();
                fflush(stdout);
                nn_profiler_write_report(2);
            }
        }
        fflush(stdout);
    }
    trainer_free(&t);
}

/* GB/s of a streaming read of 1 GiB (an integer sum the compiler
 * vectorises), best of 3, over the process's CPU time: on a shared host,
 * time spent waiting for a core is not the memory's. */
static double bandwidth_gbs(void) {
    const size_t n = (size_t)1 << 28; /* 32-bit words: 1 GiB */
    uint32_t *a = malloc(n * sizeof *a);
    if (!a) return NAN;
    for (size_t i = 0; i < n; i++) a[i] = (uint32_t)i;
    double best = 0;
    volatile uint64_t sink = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = bench_process_cpu_s();
        uint64_t s = 0;
        for (size_t i = 0; i < n; i++) s += a[i];
        sink = s;
        double gbs = (double)(n * sizeof *a) / (bench_process_cpu_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    (void)sink;
    free(a);
    return best;
}

/* A GPT of the given shape (random weights, seed 3: the same for every
 * dtype), its weights converted to `dtype` (nn_module_convert) unless f32,
 * through a model file's bytes (the half weights saved and loaded natively). */
static nn_model *decode_model(int64_t vocab, int64_t block, int64_t layers, int64_t heads,
                              int64_t channels, nn_dtype dtype, bool int8) {
    nn_gpt_config cfg;
    nn_gpt_config_init(&cfg);
    cfg.vocab_size = vocab;
    cfg.block_size = block;
    cfg.n_layer = layers;
    cfg.n_head = heads;
    cfg.n_embd = channels;
    nn_generator_seed(NULL, 3);
    nn_module *m = nn_gpt_new(&cfg);
    if (!m) bench_die("nn_gpt_new");
    /* int8: the projections quantized first (f32 weights only), then the
     * embeddings / tied head converted when dtype says so */
    if (int8 && nn_quantize_dynamic(m, NULL, NULL)) bench_die("nn_quantize_dynamic");
    if (dtype != NN_DTYPE_F32 && nn_module_convert(m, dtype)) bench_die("nn_module_convert");
    void *buf = NULL;
    size_t len = 0;
    if (nn_model_save_buffer(m, NULL, NULL, &buf, &len)) bench_die("save");
    nn_module_free(m);
    nn_model *model = nn_model_load_buffer(buf, len, NULL);
    nn_free(buf);
    if (!model) bench_die("load");
    return model;
}

/* Decode tokens/s for the weight dtypes f32, bf16, f16 (each a model of
 * its own; rounds interleaved so all see the same load), and the ratio of
 * each half dtype's median to f32's. */
static void bench_decode(const char *name, int64_t vocab, int64_t block, int64_t layers,
                         int64_t heads, int64_t channels, int64_t prompt_len, int64_t tokens,
                         double gbs, const int *threads, int nthreads, int rounds) {
    enum { ND = 5, MAXR = 16 };
    const nn_dtype dts[ND] = {NN_DTYPE_F32, NN_DTYPE_BF16, NN_DTYPE_F16, NN_DTYPE_F32,
                              NN_DTYPE_BF16};
    const bool int8[ND] = {false, false, false, true, true};
    const char *dname[ND] = {"", "_bf16", "_f16", "_int8", "_int8_bf16"};
    nn_model *model[ND];
    for (int d = 0; d < ND; d++)
        model[d] = decode_model(vocab, block, layers, heads, channels, dts[d], int8[d]);
    /* bytes read per token: every weight matrix once (the tied head is the
     * embedding, read in full; the embedding rows themselves are one row);
     * biases and norms stay f32 */
    const double ch = (double)channels;
    const double welems = (double)layers * 12.0 * ch * ch + (double)vocab * ch,
                 small = 4.0 * (double)layers * 13.0 * ch;
    int64_t *prompt = malloc(sizeof(int64_t) * (size_t)prompt_len);
    for (int64_t i = 0; i < prompt_len; i++) prompt[i] = (i * 31 + 7) % vocab;
    if (rounds < 1) rounds = 1;
    if (rounds > MAXR) rounds = MAXR;
    for (int ti = 0; ti < nthreads; ti++) {
        nn_set_num_threads(threads[ti]);
        double tps[ND][MAXR], tpc[ND][MAXR];
        for (int r = 0; r < rounds; r++) {
            for (int d = 0; d < ND; d++) {
                nn_sampling o;
                nn_sampling_init(&o);
                o.max_tokens = tokens;
                nn_session *s = nn_session_new(model[d], &o);
                if (!s || nn_session_append(s, prompt, prompt_len)) bench_die("prefill");
                int64_t n = 0;
                double t0 = bench_now_s(), c0 = bench_process_cpu_s();
                if (nn_session_generate(s, NULL, 0, NULL, 0, NULL, 0, &n, NULL, NULL))
                    bench_die("generate");
                tps[d][r] = (double)n / (bench_now_s() - t0);
                /* per wall second if never descheduled */
                tpc[d][r] = (double)n / (bench_process_cpu_s() - c0) * threads[ti];
                nn_session_free(s);
            }
        }
        double v[ND], vc[ND];
        for (int d = 0; d < ND; d++) {
            v[d] = bench_median(tps[d], rounds);
            vc[d] = bench_median(tpc[d], rounds);
            /* int8: 1 byte per projection weight + its f32 scale; the tied
             * head stays f32 (_int8) or bf16 (_int8_bf16) */
            const double proj = (double)layers * 12.0 * ch * ch, head = (double)vocab * ch,
                         hb = dts[d] == NN_DTYPE_F32 ? 4.0 : 2.0;
            const double wbytes =
                (int8[d] ? proj + 4.0 * (double)layers * 12.0 * ch + head * hb : welems * hb) +
                small;
            const double bound = gbs * 1e9 / wbytes;
            printf("BENCH %s%s %d %.1f tokens/s wall, %.1f by CPU time (bound %.1f at %.1f "
                   "GB/s for %.1f MB of weights: %.0f%% by CPU time)\n",
                   name, dname[d], threads[ti], v[d], vc[d], bound, gbs, wbytes / 1e6,
                   100.0 * vc[d] / bound);
        }
        for (int d = 1; d < ND; d++)
            printf("BENCH %s%s_ratio %d %.2fx wall, %.2fx by CPU time (%s / f32 tokens/s%s)\n",
                   name, dname[d], threads[ti], v[d] / v[0], vc[d] / vc[0], dname[d] + 1,
                   int8[d] ? "" : "; target >= 1.7x");
        fflush(stdout);
    }
    free(prompt);
    for (int d = 0; d < ND; d++) nn_model_free(model[d]);
}

/* bench_llmc.py beside bench_gpt_torch.py (same folder), or --llmc-script. */
static void sibling(const char *script, const char *name, char *out, size_t n) {
    const char *slash = script ? strrchr(script, '/') : NULL;
    if (slash) snprintf(out, n, "%.*s/%s", (int)(slash - script), script, name);
    else snprintf(out, n, "tests/bench/%s", name);
}

int main(int argc, char **argv) {
    bench_prog = "bench_gpt";
    const char *torch = NULL, *llmc = NULL, *llmc_script = NULL;
    int steps = 10, rounds = 3, threads[8] = {1, 2}, nthreads = 2;
    int steps_big = 5, rounds_big = 3, decode_rounds = 5, threads_big[8] = {2}, nthreads_big = 1;
    bool profile = false, big = true, decode = true, train = true, mini = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--torch") && i + 1 < argc) torch = argv[++i];
        else if (!strcmp(argv[i], "--llmc") && i + 1 < argc) llmc = argv[++i];
        else if (!strcmp(argv[i], "--llmc-script") && i + 1 < argc) llmc_script = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps-124m") && i + 1 < argc) steps_big = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds-124m") && i + 1 < argc) rounds_big = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds-decode") && i + 1 < argc)
            decode_rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--profile")) profile = true;
        else if (!strcmp(argv[i], "--no-124m")) big = false;
        else if (!strcmp(argv[i], "--no-mini")) mini = false;
        else if (!strcmp(argv[i], "--no-decode")) decode = false;
        else if (!strcmp(argv[i], "--no-train")) train = false;
        else if ((!strcmp(argv[i], "--threads") || !strcmp(argv[i], "--threads-124m")) &&
                 i + 1 < argc) {
            bool b = !strcmp(argv[i], "--threads-124m");
            int *th = b ? threads_big : threads, n = 0;
            for (char *tok = strtok(argv[++i], ","); tok && n < 8; tok = strtok(NULL, ","))
                th[n++] = atoi(tok);
            *(b ? &nthreads_big : &nthreads) = n;
        } else {
            fprintf(stderr,
                    "usage: %s [--torch SCRIPT] [--llmc LLMC_SOURCE_DIR [--llmc-script PY]] "
                    "[--steps N] [--rounds N] [--steps-124m N] [--rounds-124m N] [--profile] "
                    "[--no-mini] [--no-124m] [--no-decode] [--no-train] [--threads 1,2] "
                    "[--threads-124m 2] [--rounds-decode N]\n",
                    argv[0]);
            return 2;
        }
    }
    if (steps < 1 || steps > 64 || rounds < 1 || rounds > 16 || steps_big < 1 ||
        steps_big > 64 || rounds_big < 1 || rounds_big > 16 || decode_rounds < 1 ||
        decode_rounds > 16) {
        fprintf(stderr, "bench_gpt: --steps 1..64, --rounds 1..16\n");
        return 2;
    }
    char llmc_py[1024];
    if (llmc && !llmc_script) {
        sibling(torch, "bench_llmc.py", llmc_py, sizeof llmc_py);
        llmc_script = llmc_py;
    }
    printf("# %s\n", nn_backend_info());
    if (train && mini)
        bench_train(&cfg_mini, torch, NULL, NULL, threads, nthreads, steps, rounds, profile);
    if (train && big)
        bench_train(&cfg_124m, torch, llmc_script, llmc, threads_big, nthreads_big, steps_big,
                    rounds_big, profile);
    if (!decode) return 0;
    double gbs = bandwidth_gbs();
    printf("BENCH memory_read_bandwidth 1 %.1f GB/s\n", gbs);
    if (mini)
        bench_decode("gpt_mini_decode", V, T, L, H, C, 16, 100, gbs, threads, nthreads,
                     decode_rounds);
    if (big)
        bench_decode("gpt2_124m_decode", 50257, 1024, 12, 12, 768, 16, 32, gbs, threads,
                     nthreads, decode_rounds);
    return 0;
}
