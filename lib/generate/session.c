/* Generation sessions: a GPT run token by token over its own key/value
 * cache, with the sampling rules of nn_sampling.
 *
 * A session reads the model's weights in place (lib/module's nn__gpt_view
 * finds and checks them once) and computes with raw float buffers, not
 * tensors: no graph, no allocation per token. New tokens go through in
 * chunks of up to CHUNK rows (a prompt's prefill; one row per decode step):
 *
 *   x = wte[tok] + wpe[pos]                                    [n, C]
 *   per layer:  a = LN1(x); qkv = a Wattnᵀ + b (backend sgemm)  [n, 3C]
 *               k, v rows -> the cache at their positions        [L][cap][C]
 *               per row i and head h: softmax(q·k_j / sqrt(D)) over the
 *               cached j <= pos_i, weighted sum of v_j          [n, C]
 *               x += y Wprojᵀ + b;  x += gelu(LN2(x) Wfcᵀ + b) Wmprojᵀ + b
 *   logits = LN_f(x_last) Wheadᵀ                                [V]
 *
 * With one row, each projection is a matrix-vector product: the backend's
 * sgemm takes its unpacked path (dot products over the weight rows, split
 * over the threads), so a decode step reads every weight once. Attention for
 * one query reads the layer's cached keys and values once.
 *
 * Half-precision weights (nn_module_convert to f16 / bf16: the embeddings,
 * the tied head and the Linears' weights) are read in place as 16 bits: the
 * projections go to the backend's half GEMM (f32 activations and sums, the
 * weight converted in registers), embedding rows are converted as they are
 * gathered. Decode is bound by the bytes of weights it streams, so a bf16
 * model runs about twice the tokens/s of its f32 original. Logits differ
 * from the f32 model's by the weights' rounding (bf16: 2^-9 relative per
 * weight; f16 2^-12), and where AVX-512 BF16 does the bf16 products, by the
 * activations' rounding to bf16 as well (backend/half.h).
 *
 * Sessions never write to the model, so any number of them, on any threads,
 * share one. The sums are ordered as the whole-sequence forward orders them
 * only up to float rounding: cached logits match recomputation to ~1e-6. */
#include "backend/backend.h"
#include "module/module_internal.h"
#include "nn_internal.h"
#include "ops/quant.h"

#include <math.h>
#include <string.h>

#define CHUNK 32 /* rows per prefill pass */

struct nn_session {
    nn__handle handle; /* NN__KIND_SESSION */
    nn_module *m;      /* retained */
    nn__gpt_view v;
    nn_sampling opt;
    nn_generator *gen;
    int64_t len, cap;   /* tokens cached; rows the cache holds now */
    bool have_logits;
    float *kc, *vc;     /* [L][cap][C] */
    float *x, *a, *qkv, *y, *f; /* chunk scratch: [CHUNK] x C, C, 3C, C, 4C */
    float *t;                   /* [CHUNK] x C: a half projection's sum before it is added */
    float *scores;      /* [T] */
    float *logits;      /* [V] */
    float *probs;       /* [V] sampling scratch */
    int64_t *order;     /* [V] */
    /* int8 projections (QuantizedLinear after nn_quantize_dynamic or
     * _static: per-row or calibrated activation parameters): per
     * layer and projection (c_attn, attn c_proj, c_fc, mlp c_proj) the layer
     * or n = 0 for a float one, its column sums computed once (the
     * activations after LayerNorm have non-zero zero points); scratch for a
     * chunk's u8 rows and their scales / zero points. */
    nn__qlayer *ql;     /* [4L] */
    int32_t *qsum;      /* column sums, ql[i] at qsum + qoff[i] */
    int64_t *qoff;      /* [4L] */
    uint8_t *qa;        /* [CHUNK][kp(4C)] */
    float *qsa;         /* [CHUNK] */
    int32_t *qzp;       /* [CHUNK] */
};
NN__HANDLE_FIRST(struct nn_session, handle);

static bool sess_check(const nn_session *s, const char *fn) {
    return nn__handle_check(s, NN__KIND_SESSION, fn, "s");
}

static const float *f32c(const nn_tensor *t) { return t ? nn__f32(t) : NULL; }

/* ------------------------------------------------------------ settings */

nn_status nn_sampling_init(nn_sampling *o) {
    if (!nn__check_ptr(o, "nn_sampling_init", "s")) return nn_last_status();
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->top_p = 1;
    return nn__ok();
}

static nn_status sampling_check(const nn_sampling *o, const char *fn) {
    if (o->struct_size != sizeof *o)
        return nn__err(NN_ERR_VERSION,
                       "%s: opts->struct_size = %u, expected %u (fill it with nn_sampling_init)",
                       fn, (unsigned)o->struct_size, (unsigned)sizeof *o);
    if (o->top_k < 0) return nn__err(NN_ERR_INVALID, "%s: top_k = %d, expected >= 0", fn, o->top_k);
    if (!(o->temperature >= 0 && o->temperature <= 1e6))
        return nn__err(NN_ERR_INVALID, "%s: temperature = %g, expected 0..1e6", fn,
                       o->temperature);
    if (!(o->top_p > 0 && o->top_p <= 1))
        return nn__err(NN_ERR_INVALID, "%s: top_p = %g, expected a value in (0, 1]", fn,
                       o->top_p);
    if (o->max_tokens < 0)
        return nn__err(NN_ERR_INVALID, "%s: max_tokens = %lld, expected >= 0", fn,
                       (long long)o->max_tokens);
    return NN_OK;
}

/* ------------------------------------------------------------ lifetime */

void nn_session_free(nn_session *s) {
    if (!s) return;
    if (!sess_check(s, "nn_session_free")) return;
    nn__aligned_free(s->kc);
    nn__aligned_free(s->vc);
    nn__aligned_free(s->x);
    nn__free(s->order);
    nn__free(s->ql), nn__free(s->qsum), nn__free(s->qoff), nn__free(s->qa);
    nn__free(s->qsa), nn__free(s->qzp);
    nn_generator_free(s->gen);
    nn__gpt_view_free(&s->v);
    nn_module_free(s->m);
    nn__handle_clear(&s->handle);
    nn__free(s);
}

/* The int8 state of a view with QuantizedLinear projections (none: no
 * allocation). An observer (a model being quantized on another thread) is
 * refused. */
static nn_status int8_setup(nn_session *s, const char *fn) {
    const nn__gpt_view *v = &s->v;
    const int64_t C = v->C, np = 4 * v->L;
    int64_t nq = 0, total = 0;
    for (int64_t l = 0; l < v->L; l++) {
        const nn__gpt_block *k = &v->blk[l];
        const nn_module *mods[4] = {k->attn_m, k->aproj_m, k->fc_m, k->mproj_m};
        for (int i = 0; i < 4; i++) {
            if (!mods[i]) continue;
            if (nn__quant_is_observer(mods[i]))
                return nn__err(NN_ERR_INVALID, "%s: the GPT is being quantized (layer %lld)", fn,
                               (long long)l);
            nq++;
        }
    }
    if (!nq) return NN_OK;
    s->ql = nn__calloc((size_t)np, sizeof *s->ql);
    s->qoff = nn__calloc((size_t)np, sizeof *s->qoff);
    s->qsa = nn__calloc(CHUNK, sizeof *s->qsa);
    s->qzp = nn__calloc(CHUNK, sizeof *s->qzp);
    s->qa = nn__calloc(CHUNK, (size_t)nn__qk_pad(4 * C));
    if (!s->ql || !s->qoff || !s->qsa || !s->qzp || !s->qa) return nn_last_status();
    for (int64_t l = 0; l < v->L; l++) {
        const nn__gpt_block *k = &v->blk[l];
        const nn_module *mods[4] = {k->attn_m, k->aproj_m, k->fc_m, k->mproj_m};
        for (int i = 0; i < 4; i++) {
            nn__qlayer *q = &s->ql[4 * l + i];
            if (mods[i] && nn__qlinear_layer(mods[i], q)) {
                s->qoff[4 * l + i] = total;
                total += q->n;
            }
        }
    }
    s->qsum = nn__calloc((size_t)total, sizeof *s->qsum);
    if (!s->qsum) return nn_last_status();
    for (int64_t i = 0; i < np; i++)
        if (s->ql[i].n) nn__qw_colsum(&s->ql[i], s->qsum + s->qoff[i]);
    return NN_OK;
}

nn_session *nn_session_new(const nn_model *model, const nn_sampling *opts) {
    const char *fn = "nn_session_new";
    if (!nn__check_ptr(model, fn, "model")) return NULL;
    nn_sampling o;
    nn_sampling_init(&o);
    if (opts) {
        if (opts->struct_size != sizeof o) {
            nn__err(NN_ERR_VERSION,
                    "%s: opts->struct_size = %u, expected %u (fill it with nn_sampling_init)", fn,
                    (unsigned)opts->struct_size, (unsigned)sizeof o);
            return NULL;
        }
        o = *opts;
        if (sampling_check(&o, fn) != NN_OK) return NULL;
    }
    nn_module *m = nn_model_module(model);
    if (!m) return NULL;
    nn_session *s = nn__calloc(1, sizeof *s);
    if (!s) return NULL;
    nn__handle_set(&s->handle, NN__KIND_SESSION);
    s->m = nn_module_retain(m);
    s->opt = o;
    if (nn__gpt_view_get(m, &s->v, fn) != NN_OK) goto fail;
    const int64_t C = s->v.C, V = s->v.V, T = s->v.T;
    /* one block: x a y t [CHUNK C] each, qkv [CHUNK 3C], f [CHUNK 4C],
     * scores [T], logits, probs [V] */
    size_t nfl = 0, t1, t2;
    if (!nn__size_mul((size_t)CHUNK, (size_t)C * 11, &t1) || !nn__size_add(t1, (size_t)T, &t2) ||
        !nn__size_add(t2, 2 * (size_t)V, &nfl) || !nn__size_mul(nfl, sizeof(float), &t1)) {
        nn__err(NN_ERR_OVERFLOW, "%s: scratch size overflows", fn);
        goto fail;
    }
    s->x = nn__aligned_alloc(t1);
    s->order = nn__calloc((size_t)V, sizeof *s->order);
    s->gen = nn_generator_new(o.seed);
    if (!s->x || !s->order || !s->gen) goto fail;
    s->a = s->x + CHUNK * C;
    s->y = s->a + CHUNK * C;
    s->qkv = s->y + CHUNK * C;
    s->f = s->qkv + CHUNK * 3 * C;
    s->t = s->f + CHUNK * 4 * C;
    s->scores = s->t + CHUNK * C;
    s->logits = s->scores + T;
    s->probs = s->logits + V;
    if (int8_setup(s, fn) != NN_OK) goto fail;
    nn__call_ok();
    return s;
fail:
    nn_session_free(s);
    return NULL;
}

nn_status nn_session_reset(nn_session *s) {
    if (!sess_check(s, "nn_session_reset")) return nn_last_status();
    s->len = 0;
    s->have_logits = false;
    nn_generator_seed(s->gen, s->opt.seed);
    return nn__ok();
}

int64_t nn_session_length(const nn_session *s) {
    if (!sess_check(s, "nn_session_length")) return -1;
    nn__call_ok();
    return s->len;
}

/* Room for `need` cached rows (doubling, at most T). */
static nn_status cache_reserve(nn_session *s, int64_t need, const char *fn) {
    if (need <= s->cap) return NN_OK;
    const int64_t L = s->v.L, C = s->v.C;
    int64_t cap = s->cap ? s->cap : 64;
    while (cap < need) cap *= 2;
    if (cap > s->v.T) cap = s->v.T;
    size_t bytes, t;
    if (!nn__size_mul((size_t)L * (size_t)cap, (size_t)C, &t) ||
        !nn__size_mul(t, sizeof(float), &bytes))
        return nn__err(NN_ERR_OVERFLOW, "%s: cache size overflows", fn);
    float *k = nn__aligned_alloc(bytes), *v = k ? nn__aligned_alloc(bytes) : NULL;
    if (!k || !v) {
        nn__aligned_free(k);
        return nn_last_status();
    }
    for (int64_t l = 0; l < L && s->len; l++) {
        memcpy(k + l * cap * C, s->kc + l * s->cap * C, sizeof(float) * (size_t)(s->len * C));
        memcpy(v + l * cap * C, s->vc + l * s->cap * C, sizeof(float) * (size_t)(s->len * C));
    }
    nn__aligned_free(s->kc);
    nn__aligned_free(s->vc);
    s->kc = k;
    s->vc = v;
    s->cap = cap;
    return NN_OK;
}

/* ------------------------------------------------------------- compute */

/* y[n, C] = LayerNorm(x[n, C]) * w + b (b may be NULL). */
static void layer_norm(const float *x, float *y, int64_t n, int64_t C, const float *w,
                       const float *b, double eps) {
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * C;
        float *yi = y + i * C;
        double mean = 0, var = 0;
        for (int64_t c = 0; c < C; c++) mean += xi[c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++) {
            double d = xi[c] - mean;
            var += d * d;
        }
        const float mu = (float)mean, rs = (float)(1.0 / sqrt(var / (double)C + eps));
        for (int64_t c = 0; c < C; c++) yi[c] = (xi[c] - mu) * rs * w[c] + (b ? b[c] : 0.0f);
    }
}

static bool is_half(const nn_tensor *t) {
    return t->dtype == NN_DTYPE_F16 || t->dtype == NN_DTYPE_BF16;
}

/* out[n, O] (=, or += when acc) in[n, I] Wᵀ (W [O, I], f32 or half) + b;
 * tmp [n, O]: the half kernel's sum when acc (it overwrites its output). */
static void project(const nn_session *s, int64_t qi, const float *in, int64_t n, int64_t I,
                    const nn_tensor *w, const float *b, int64_t O, float *out, bool acc,
                    float *tmp) {
    const nn_kernels *kt = nn__kernels();
    if (qi >= 0 && s->ql && s->ql[qi].n) { /* int8: rows quantized here, bias in the epilogue */
        float *dst = acc ? tmp : out;
        nn__qlinear_rows(&s->ql[qi], in, n, s->qa, s->qsa, s->qzp, s->qsum + s->qoff[qi], NULL,
                         dst);
        if (acc)
            for (int64_t i = 0; i < n * O; i++) out[i] += tmp[i];
        return;
    }
    if (is_half(w)) {
        float *dst = acc ? tmp : out;
        kt->half.gemm(w->dtype == NN_DTYPE_BF16, true, n, O, I, in, I, nn__u16(w), I, dst, O);
        if (acc)
            for (int64_t i = 0; i < n * O; i++) out[i] += tmp[i];
    } else {
        kt->gemm.sgemm(false, true, n, O, I, 1.0f, in, I, nn__f32(w), I, acc ? 1.0f : 0.0f, out,
                       O);
    }
    if (b)
        for (int64_t i = 0; i < n; i++)
            for (int64_t o = 0; o < O; o++) out[i * O + o] += b[o];
}

/* dst[0..C) = row r of the embedding e (f32 or half). */
static void embed_row(const nn_tensor *e, int64_t r, int64_t C, float *dst) {
    if (!is_half(e)) {
        memcpy(dst, nn__f32(e) + r * C, sizeof(float) * (size_t)C);
        return;
    }
    const nn__cvt_kernels *cv = &nn__kernels()->half.cvt;
    (e->dtype == NN_DTYPE_BF16 ? cv->bf16_to_f32 : cv->f16_to_f32)(nn__u16(e) + r * C, dst,
                                                                   (size_t)C);
}

/* e^z for z in [-87, 87]: 2^(z log2 e) as 2^n (exponent bits) times a
 * degree-6 polynomial for 2^f, |f| <= 1/2 (relative error ~2e-7). Plain
 * arithmetic, so the loop below vectorizes (libm's tanhf is a call per
 * element: a third of the non-GEMV time of a decode step). */
static inline float exp_approx(float z) {
    const float y = z * 1.44269504f;
    const float r = (y + 12582912.0f) - 12582912.0f; /* round to nearest */
    const float f = y - r;
    float p = 1.540353e-4f;
    p = p * f + 1.3333558e-3f;
    p = p * f + 9.6181291e-3f;
    p = p * f + 5.5504109e-2f;
    p = p * f + 2.4022651e-1f;
    p = p * f + 6.9314718e-1f;
    p = p * f + 1.0f;
    union {
        int32_t i;
        float f;
    } u = {.i = ((int32_t)r + 127) * (1 << 23)};
    return p * u.f;
}

/* gelu (tanh form) in place: x/2 (1 + tanh(u)) = x / (1 + e^(-2u)),
 * u = sqrt(2/pi) (x + 0.044715 x^3); within ~3e-7 relative of the tanhf
 * form nn_gelu computes. */
static void gelu_tanh(float *x, int64_t n) {
    const float k2 = -2.0f * 0.7978845608028654f; /* -2 sqrt(2 / pi) */
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        float z = k2 * (v + 0.044715f * v * v * v);
        z = z < -87.0f ? -87.0f : z > 87.0f ? 87.0f : z;
        x[i] = v / (1.0f + exp_approx(z));
    }
}

/* Causal attention of rows [0, n) (positions p0 + i) over the cache rows
 * 0..p0+i of one layer: y[i, h D .. ] for every head. */
static void attend(nn_session *s, const float *kc, const float *vc, int64_t p0, int64_t n) {
    const int64_t C = s->v.C, H = s->v.H, D = C / H;
    const float scale = (float)(1.0 / sqrt((double)D));
    float *sc = s->scores;
    for (int64_t i = 0; i < n; i++) {
        const int64_t len = p0 + i + 1;
        for (int64_t h = 0; h < H; h++) {
            const float *q = s->qkv + i * 3 * C + h * D;
            float mx = -INFINITY;
            for (int64_t j = 0; j < len; j++) {
                const float *kj = kc + j * C + h * D;
                float d = 0;
                for (int64_t e = 0; e < D; e++) d += q[e] * kj[e];
                sc[j] = d * scale;
                if (sc[j] > mx) mx = sc[j];
            }
            float sum = 0;
            for (int64_t j = 0; j < len; j++) sum += sc[j] = expf(sc[j] - mx);
            float *yo = s->y + i * C + h * D;
            memset(yo, 0, sizeof(float) * (size_t)D);
            for (int64_t j = 0; j < len; j++) {
                const float w = sc[j] / sum, *vj = vc + j * C + h * D;
                for (int64_t e = 0; e < D; e++) yo[e] += w * vj[e];
            }
        }
    }
}

/* Tokens tok[0..n) (n <= CHUNK) at positions len.., cache already sized. */
static void run_chunk(nn_session *s, const int64_t *tok, int64_t n, bool last) {
    const nn__gpt_view *v = &s->v;
    const int64_t C = v->C, p0 = s->len;
    for (int64_t i = 0; i < n; i++) {
        float *xi = s->x + i * C;
        embed_row(v->wte, tok[i], C, xi);
        embed_row(v->wpe, p0 + i, C, s->a); /* a: scratch until the first LayerNorm */
        for (int64_t c = 0; c < C; c++) xi[c] += s->a[c];
    }
    for (int64_t l = 0; l < v->L; l++) {
        const nn__gpt_block *k = &v->blk[l];
        float *kc = s->kc + l * s->cap * C, *vc = s->vc + l * s->cap * C;
        layer_norm(s->x, s->a, n, C, f32c(k->ln1_w), f32c(k->ln1_b), v->eps);
        project(s, 4 * l, s->a, n, C, k->attn_w, f32c(k->attn_b), 3 * C, s->qkv, false, NULL);
        for (int64_t i = 0; i < n; i++) {
            memcpy(kc + (p0 + i) * C, s->qkv + i * 3 * C + C, sizeof(float) * (size_t)C);
            memcpy(vc + (p0 + i) * C, s->qkv + i * 3 * C + 2 * C, sizeof(float) * (size_t)C);
        }
        attend(s, kc, vc, p0, n);
        project(s, 4 * l + 1, s->y, n, C, k->aproj_w, f32c(k->aproj_b), C, s->x, true, s->t);
        layer_norm(s->x, s->a, n, C, f32c(k->ln2_w), f32c(k->ln2_b), v->eps);
        project(s, 4 * l + 2, s->a, n, C, k->fc_w, f32c(k->fc_b), 4 * C, s->f, false, NULL);
        gelu_tanh(s->f, n * 4 * C);
        project(s, 4 * l + 3, s->f, n, 4 * C, k->mproj_w, f32c(k->mproj_b), C, s->x, true, s->t);
    }
    s->len += n;
    if (!last) return;
    layer_norm(s->x + (n - 1) * C, s->a, 1, C, f32c(v->lnf_w), f32c(v->lnf_b), v->eps);
    project(s, -1, s->a, 1, C, v->head, NULL, v->V, s->logits, false, NULL);
    s->have_logits = true;
}

nn_status nn_session_append(nn_session *s, const int64_t *tokens, int64_t n) {
    const char *fn = "nn_session_append";
    if (!sess_check(s, fn)) return nn_last_status();
    if (n < 0) return nn__err(NN_ERR_INVALID, "%s: n = %lld, expected >= 0", fn, (long long)n);
    if (n == 0) return nn__ok();
    if (!nn__check_ptr(tokens, fn, "tokens")) return nn_last_status();
    if (n > s->v.T - s->len)
        return nn__err(NN_ERR_LIMIT,
                       "%s: %lld cached + %lld new tokens exceed the model's block_size %lld", fn,
                       (long long)s->len, (long long)n, (long long)s->v.T);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->v.V)
            return nn__err(NN_ERR_RANGE, "%s: tokens[%lld] = %lld is outside the vocabulary 0..%lld",
                           fn, (long long)i, (long long)tokens[i], (long long)(s->v.V - 1));
    if (cache_reserve(s, s->len + n, fn) != NN_OK) return nn_last_status();
    for (int64_t i = 0; i < n; i += CHUNK) {
        int64_t k = n - i < CHUNK ? n - i : CHUNK;
        run_chunk(s, tokens + i, k, i + k == n);
    }
    return nn__ok();
}

nn_status nn_session_logits(const nn_session *s, float *out, int64_t cap) {
    const char *fn = "nn_session_logits";
    if (!sess_check(s, fn) || !nn__check_ptr(out, fn, "out")) return nn_last_status();
    if (!s->have_logits)
        return nn__err(NN_ERR_STATE, "%s: no logits yet: append a token first", fn);
    if (cap < s->v.V)
        return nn__err(NN_ERR_INVALID, "%s: cap = %lld, the vocabulary needs %lld", fn,
                       (long long)cap, (long long)s->v.V);
    memcpy(out, s->logits, sizeof(float) * (size_t)s->v.V);
    return nn__ok();
}

/* ------------------------------------------------------------ sampling */

/* Sort order[0..n) by probs, descending: a heap sort (in place, no
 * callback state shared between threads). */
static void sift(int64_t *o, const float *p, int64_t i, int64_t n) {
    /* min-heap on (value desc, index asc) order: root is the "largest" key
     * under by_value_desc, i.e. the smallest probability */
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n) {
            int64_t x = o[c], y = o[c + 1];
            bool y_after = p[y] < p[x] || (p[y] == p[x] && y > x);
            if (y_after) c++;
        }
        int64_t a = o[i], b = o[c];
        bool b_after = p[b] < p[a] || (p[b] == p[a] && b > a);
        if (!b_after) return;
        o[i] = b;
        o[c] = a;
        i = c;
    }
}

static void sort_desc(int64_t *o, const float *p, int64_t n) {
    for (int64_t i = n / 2 - 1; i >= 0; i--) sift(o, p, i, n);
    for (int64_t e = n - 1; e > 0; e--) {
        int64_t t = o[0];
        o[0] = o[e];
        o[e] = t;
        sift(o, p, 0, e);
    }
}

nn_status nn_session_sample(nn_session *s, int64_t *token) {
    const char *fn = "nn_session_sample";
    if (!sess_check(s, fn) || !nn__check_ptr(token, fn, "token")) return nn_last_status();
    if (!s->have_logits)
        return nn__err(NN_ERR_STATE, "%s: no logits yet: append a token first", fn);
    const int64_t V = s->v.V;
    const float *lg = s->logits;
    const nn_sampling *o = &s->opt;
    if (o->temperature == 0 || o->top_k == 1) { /* greedy: the first largest */
        int64_t best = 0;
        for (int64_t i = 1; i < V; i++)
            if (lg[i] > lg[best]) best = i;
        *token = best;
        return nn__ok();
    }
    float *p = s->probs;
    const float inv_t = (float)(1.0 / o->temperature);
    float mx = -INFINITY;
    for (int64_t i = 0; i < V; i++) {
        p[i] = lg[i] * inv_t;
        if (p[i] > mx) mx = p[i];
    }
    double sum = 0;
    for (int64_t i = 0; i < V; i++) sum += p[i] = expf(p[i] - mx);
    int64_t n = V;
    for (int64_t i = 0; i < V; i++) s->order[i] = i;
    const bool need_sort = (o->top_k > 0 && o->top_k < V) || o->top_p < 1;
    if (need_sort) {
        sort_desc(s->order, p, V);
        if (o->top_k > 0 && o->top_k < n) n = o->top_k;
        double kept = 0;
        for (int64_t i = 0; i < n; i++) kept += p[s->order[i]];
        if (o->top_p < 1) { /* the smallest prefix holding top_p of what is kept */
            double c = 0;
            for (int64_t i = 0; i < n; i++) {
                c += p[s->order[i]];
                if (c >= o->top_p * kept) {
                    n = i + 1;
                    break;
                }
            }
        }
        sum = 0;
        for (int64_t i = 0; i < n; i++) sum += p[s->order[i]];
    }
    const double u = nn__gen_uniform_f64(s->gen) * sum;
    double c = 0;
    int64_t pick = s->order[n - 1];
    for (int64_t i = 0; i < n; i++) {
        c += p[s->order[i]];
        if (u < c) {
            pick = s->order[i];
            break;
        }
    }
    *token = pick;
    return nn__ok();
}

nn_status nn_session_generate(nn_session *s, const int64_t *prompt, int64_t n,
                              const int64_t *stop, int64_t nstop, int64_t *out, int64_t cap,
                              int64_t *n_out, nn_token_fn on_token, void *user) {
    const char *fn = "nn_session_generate";
    if (n_out) *n_out = 0;
    if (!sess_check(s, fn)) return nn_last_status();
    if (nstop < 0 || (nstop > 0 && !stop))
        return nn__err(nstop < 0 ? NN_ERR_INVALID : NN_ERR_NULL, "%s: nstop = %lld with stop %s",
                       fn, (long long)nstop, stop ? "set" : "NULL");
    if (cap < 0 || (cap > 0 && !out))
        return nn__err(cap < 0 ? NN_ERR_INVALID : NN_ERR_NULL, "%s: cap = %lld with out %s", fn,
                       (long long)cap, out ? "set" : "NULL");
    if (n > 0 && nn_session_append(s, prompt, n) != NN_OK) return nn__forward(fn);
    if (n < 0) return nn__err(NN_ERR_INVALID, "%s: n = %lld, expected >= 0", fn, (long long)n);
    if (!s->have_logits)
        return nn__err(NN_ERR_STATE, "%s: nothing to continue: give a prompt (n > 0)", fn);
    int64_t count = 0;
    for (;;) {
        if (s->opt.max_tokens > 0 && count >= s->opt.max_tokens) break;
        if (out && count >= cap) break;
        if (s->len >= s->v.T) break; /* the cache is full */
        int64_t tok;
        if (nn_session_sample(s, &tok) != NN_OK) return nn__forward(fn);
        bool is_stop = false;
        for (int64_t i = 0; i < nstop && !is_stop; i++) is_stop = stop[i] == tok;
        if (is_stop) break;
        if (nn_session_append(s, &tok, 1) != NN_OK) return nn__forward(fn);
        if (out) out[count] = tok;
        count++;
        if (n_out) *n_out = count;
        if (on_token && on_token(tok, user)) break;
    }
    return nn__ok();
}
