/* char_gpt: train a byte-level GPT on the fortune cookies of Debian's
 * `fortunes` package, report training and validation loss against the
 * unigram baseline, save the model, then generate a sample from the saved
 * file with a session (as examples/generate.c does).
 *
 * The PyTorch (nanoGPT) version, in the same order:
 *
 *   data = b"".join(open(f, "rb").read() for f in fortune_files)
 *   train, val = data[:90%], data[90%:]
 *   model = GPT(GPTConfig(vocab_size=256, block_size=64, n_layer=4, n_head=4,
 *                         n_embd=128, dropout=0.0, bias=True))
 *   opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
 *   for step in range(steps):
 *       x, y = get_batch("train")            # random windows, y = x shifted by one
 *       logits = model(x)
 *       loss = F.cross_entropy(logits.view(-1, 256), y.view(-1))
 *       opt.zero_grad(); loss.backward(); opt.step()
 *       if step % eval_every == 0: print(step, loss, estimate_loss("val"))
 *   torch.save(model.state_dict(), "char_gpt.pt")
 *   print(decode(model.generate(encode("\n"), 300, temperature=0.8, top_k=40)))
 *
 * Usage: char_gpt [--corpus DIR] [--steps N] [--threads N] [--batch-size N]
 *            [--block N] [--layers N] [--heads N] [--channels N] [--lr X]
 *            [--seed N] [--save PATH] [--sample N]
 * NN_EXAMPLE_SMOKE=1: a tiny model for a few steps (the test suite). Exits 77
 * (skipped) when the corpus is absent, 1 on any error, and, in a full run, 1
 * when validation loss does not beat the unigram baseline.
 */
#include <nn.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef struct options {
    const char *corpus, *save;
    int64_t steps, batch, block, layers, heads, channels, sample;
    int threads;
    double lr;
    uint64_t seed;
} options;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(const char *what) {
    fprintf(stderr, "char_gpt: %s: %s\n", what, nn_last_error());
    return 1;
}

/* Every fortune file of dir (not the .dat indexes or .u8 links), in name
 * order, concatenated: at most cap bytes. */
static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static unsigned char *read_corpus(const char *dir, size_t cap, size_t *len) {
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char *names[1024];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 1024) {
        const char *dot = strrchr(e->d_name, '.');
        if (e->d_name[0] == '.' || (dot && (!strcmp(dot, ".dat") || !strcmp(dot, ".u8"))))
            continue;
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    unsigned char *buf = malloc(cap);
    *len = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        free(names[i]);
        if (!buf || lstat(path, &st) || !S_ISREG(st.st_mode)) continue;
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        *len += fread(buf + *len, 1, cap - *len, f);
        fclose(f);
    }
    return buf;
}

/* A batch of random windows: x = data[o .. o+T), y = data[o+1 .. o+T+1). */
static void get_batch(const unsigned char *data, size_t len, int64_t B, int64_t T,
                      nn_generator *g, int64_t *x, int64_t *y) {
    for (int64_t b = 0; b < B; b++) {
        size_t o = (size_t)(nn_generator_next(g) % (uint64_t)(len - (size_t)T - 1));
        for (int64_t t = 0; t < T; t++) {
            x[b * T + t] = data[o + (size_t)t];
            y[b * T + t] = data[o + (size_t)t + 1];
        }
    }
}

/* Mean cross-entropy of model on `batches` random batches (eval, no grad). */
static double estimate_loss(nn_module *gpt, const unsigned char *data, size_t len, int64_t B,
                            int64_t T, int batches, nn_generator *g, int64_t *x, int64_t *y) {
    nn_module_train(gpt, false);
    bool was = nn_set_grad_enabled(false);
    double sum = 0;
    int64_t sx[2] = {B, T}, s2[2] = {B * T, 256}, s1[1] = {B * T};
    for (int i = 0; i < batches; i++) {
        nn_scope *sc = nn_scope_begin();
        get_batch(data, len, B, T, g, x, y);
        nn_tensor *xt = nn_tensor_from_data(NN_DTYPE_I64, sx, 2, x);
        nn_tensor *yt = nn_tensor_from_data(NN_DTYPE_I64, s1, 1, y);
        nn_tensor *loss = nn_cross_entropy(nn_reshape(nn_module_forward(gpt, xt), s2, 2), yt);
        sum += loss ? nn_tensor_item(loss) : NAN;
        nn_scope_end(sc);
    }
    nn_set_grad_enabled(was);
    nn_module_train(gpt, true);
    return sum / batches;
}

/* Cross-entropy of val under train's byte frequencies (add-one smoothed). */
static double unigram_loss(const unsigned char *tr, size_t ntr, const unsigned char *va,
                           size_t nva) {
    double count[256];
    for (int i = 0; i < 256; i++) count[i] = 1;
    for (size_t i = 0; i < ntr; i++) count[tr[i]] += 1;
    double total = (double)ntr + 256, loss = 0;
    for (size_t i = 0; i < nva; i++) loss -= log(count[va[i]] / total);
    return loss / (double)nva;
}

static int on_token(int64_t tok, void *user) {
    (void)user;
    putchar((int)tok);
    return 0;
}

static int parse(int argc, char **argv, options *o) {
    bool smoke = getenv("NN_EXAMPLE_SMOKE") && !strcmp(getenv("NN_EXAMPLE_SMOKE"), "1");
    *o = (options){.corpus = "/usr/share/games/fortunes",
                   .save = "char_gpt.nnm",
                   .steps = smoke ? 30 : 1500,
                   .batch = smoke ? 8 : 32,
                   .block = smoke ? 32 : 64,
                   .layers = smoke ? 1 : 4,
                   .heads = smoke ? 2 : 4,
                   .channels = smoke ? 32 : 128,
                   .sample = smoke ? 60 : 400,
                   .threads = 0,
                   .lr = smoke ? 3e-3 : 1e-3,
                   .seed = 1337};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "char_gpt: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (!strcmp(a, "--corpus")) o->corpus = v;
        else if (!strcmp(a, "--save")) o->save = v;
        else if (!strcmp(a, "--steps")) o->steps = atoll(v);
        else if (!strcmp(a, "--batch-size")) o->batch = atoll(v);
        else if (!strcmp(a, "--block")) o->block = atoll(v);
        else if (!strcmp(a, "--layers")) o->layers = atoll(v);
        else if (!strcmp(a, "--heads")) o->heads = atoll(v);
        else if (!strcmp(a, "--channels")) o->channels = atoll(v);
        else if (!strcmp(a, "--sample")) o->sample = atoll(v);
        else if (!strcmp(a, "--threads")) o->threads = atoi(v);
        else if (!strcmp(a, "--lr")) o->lr = atof(v);
        else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "char_gpt: unknown option %s\n", a);
            return -1;
        }
    }
    return smoke;
}

int main(int argc, char **argv) {
    options o;
    int smoke = parse(argc, argv, &o);
    if (smoke < 0) return 2;
    if (o.threads > 0 && nn_set_num_threads(o.threads)) return fail("nn_set_num_threads");

    size_t len = 0;
    unsigned char *data = read_corpus(o.corpus, (size_t)8 << 20, &len);
    if (!data || len < 10000) {
        fprintf(stderr, "char_gpt: no corpus in %s (apt-get install fortunes): skipped\n",
                o.corpus);
        free(data);
        return 77;
    }
    size_t ntr = len / 10 * 9, nva = len - ntr;
    const unsigned char *train = data, *val = data + ntr;
    double unigram = unigram_loss(train, ntr, val, nva);
    printf("corpus: %zu bytes from %s (train %zu, val %zu)\n", len, o.corpus, ntr, nva);

    nn_generator_seed(NULL, o.seed); /* the default generator: the initial weights */
    nn_gpt_config cfg;
    nn_gpt_config_init(&cfg);
    cfg.vocab_size = 256;
    cfg.block_size = o.block;
    cfg.n_layer = o.layers;
    cfg.n_head = o.heads;
    cfg.n_embd = o.channels;
    nn_module *gpt = nn_gpt_new(&cfg);
    if (!gpt) return fail("nn_gpt_new");
    printf("model: GPT %lld layers, %lld heads, %lld channels, block %lld: %lld parameters\n",
           (long long)o.layers, (long long)o.heads, (long long)o.channels, (long long)o.block,
           (long long)nn_module_param_count(gpt));

    /* AdamW as nanoGPT groups it: decay on matrices only. */
    int64_t np = nn_module_num_parameters(gpt);
    nn_tensor **decay = calloc((size_t)np, sizeof *decay), **rest = calloc((size_t)np, sizeof *rest);
    int64_t nd = 0, nr = 0;
    for (int64_t i = 0; i < np; i++) {
        nn_tensor *p = nn_module_parameter(gpt, i, NULL);
        if (nn_tensor_ndim(p) >= 2) decay[nd++] = p;
        else rest[nr++] = p;
    }
    nn_optim *opt = nn_adamw(decay, nd, o.lr, 0.1);
    if (!opt || nn_optim_add_group(opt, rest, nr, o.lr) ||
        nn_optim_set_group(opt, 1, NN_OPTIM_WEIGHT_DECAY, 0) ||
        nn_optim_set(opt, NN_OPTIM_BETA2, 0.99))
        return fail("optimizer");
    free(decay);
    free(rest);

    const int64_t B = o.batch, T = o.block;
    int64_t *x = malloc(sizeof(int64_t) * (size_t)(B * T)),
            *y = malloc(sizeof(int64_t) * (size_t)(B * T));
    nn_generator *g = nn_generator_new(o.seed), *ge = nn_generator_new(o.seed + 1);
    int64_t sx[2] = {B, T}, s2[2] = {B * T, 256}, s1[1] = {B * T};
    const int64_t eval_every = smoke ? o.steps : (o.steps / 10 > 0 ? o.steps / 10 : 1);
    const int eval_batches = smoke ? 2 : 20;
    double t0 = now(), val_loss = NAN;
    printf("unigram baseline (val): %.4f\n", unigram);
    for (int64_t step = 1; step <= o.steps; step++) {
        nn_scope *sc = nn_scope_begin();
        get_batch(train, ntr, B, T, g, x, y);
        nn_tensor *xt = nn_tensor_from_data(NN_DTYPE_I64, sx, 2, x);
        nn_tensor *yt = nn_tensor_from_data(NN_DTYPE_I64, s1, 1, y);
        nn_optim_zero_grad(opt);
        nn_tensor *loss = nn_cross_entropy(nn_reshape(nn_module_forward(gpt, xt), s2, 2), yt);
        if (!loss || nn_backward(loss) || nn_optim_step(opt)) return fail("training step");
        double l = nn_tensor_item(loss);
        nn_scope_end(sc);
        if (step % eval_every == 0 || step == 1) {
            val_loss = estimate_loss(gpt, val, nva, B, T, eval_batches, ge, x, y);
            printf("step %5lld  train loss %.4f  val loss %.4f  (%.0f ms/step)\n",
                   (long long)step, l, val_loss, 1e3 * (now() - t0) / (double)step);
            fflush(stdout);
        }
    }
    printf("validation loss %.4f vs unigram baseline %.4f\n", val_loss, unigram);

    nn_meta *meta = nn_meta_new();
    nn_meta_set_string(meta, "description", "byte-level GPT trained on Debian fortunes");
    nn_module_train(gpt, false);
    if (nn_model_save(gpt, o.save, meta, NULL)) return fail("nn_model_save");
    printf("saved %s\n", o.save);
    nn_meta_free(meta);

    /* The embedding path: load the file, one session, stream a sample. */
    nn_model *model = nn_model_load(o.save, NULL);
    nn_sampling so;
    nn_sampling_init(&so);
    so.temperature = 0.8;
    so.top_k = 40;
    so.seed = o.seed;
    so.max_tokens = o.sample;
    nn_session *s = model ? nn_session_new(model, &so) : NULL;
    if (!s) return fail("session");
    const int64_t prompt[1] = {'\n'};
    printf("--- sample ---\n");
    if (nn_session_generate(s, prompt, 1, NULL, 0, NULL, 0, NULL, on_token, NULL))
        return fail("nn_session_generate");
    printf("\n--------------\n");

    nn_session_free(s);
    nn_model_free(model);
    nn_generator_free(g);
    nn_generator_free(ge);
    nn_optim_free(opt);
    nn_module_free(gpt);
    free(x);
    free(y);
    free(data);
    if (!isfinite(val_loss)) return 1;
    if (!smoke && !(val_loss < unigram)) {
        fprintf(stderr, "char_gpt: validation loss did not beat the unigram baseline\n");
        return 1;
    }
    return 0;
}
