/* Int8 inference ops (see quant.h): weight quantization and packing, and the
 * forward of quantized Linear and Conv2d through the backend's int8 kernels.
 * Scratch memory comes from the allocator hook once per call and is sized
 * with the overflow-checked helpers. */
#include "ops/quant.h"

#include "backend/backend.h"
#include "backend/threadpool.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static inline int8_t *qw_data(const nn_tensor *t) { return (int8_t *)nn__u8(t); }

_Static_assert(NN__Q_DEPTH_MAX == NN__QK_MAX, "ops/quant.h and backend/int8.h agree");

void nn__q_act_params(float mn, float mx, float *scale, int32_t *zp) {
    nn__qparams_u8(mn, mx, scale, zp);
}

void nn__qw_shape(int64_t n, int64_t k, int64_t shape[3]) {
    shape[0] = (n + NN__QNR - 1) / NN__QNR;
    shape[1] = nn__qk_pad(k) / 4;
    shape[2] = NN__QNR * 4;
}

bool nn__qw_prefer_w7(void) { return nn__kernels()->int8.weight_bits() == 7; }

nn_status nn__qw_quantize(const float *w, int64_t n, int64_t k, bool w7, nn_tensor *packed,
                          float *scale, const char *fn) {
    if (k > NN__QK_MAX)
        return nn__err(NN_ERR_LIMIT, "%s: in_features %lld exceeds the int8 limit %d", fn,
                       (long long)k, NN__QK_MAX);
    size_t bytes;
    if (!nn__size_mul((size_t)n, (size_t)k, &bytes))
        return nn__err(NN_ERR_OVERFLOW, "%s: weight size overflows", fn);
    int8_t *q = nn__malloc(bytes ? bytes : 1);
    if (!q) return NN_ERR_NOMEM;
    for (int64_t j = 0; j < n; j++) {
        const float *row = w + j * k;
        float amax = 0.0f;
        for (int64_t i = 0; i < k; i++)
            if (fabsf(row[i]) > amax) amax = fabsf(row[i]);
        const float qmax = w7 ? (float)NN__QW7_MAX : 127.0f;
        const float s = amax > 0.0f && isfinite(amax) ? amax / qmax : 1.0f;
        const float inv = 1.0f / s;
        for (int64_t i = 0; i < k; i++) {
            float r = nearbyintf(row[i] * inv);
            q[j * k + i] = (int8_t)(r >= qmax ? qmax : r <= -qmax ? -qmax : r == r ? r : 0.0f);
        }
        scale[j] = s;
    }
    nn__kernels()->int8.pack(n, k, q, k, qw_data(packed));
    nn__free(q);
    return NN_OK;
}

void nn__qw_dequantize(const nn_tensor *packed, const float *scale, int64_t n, int64_t k,
                       float *wf) {
    const int8_t *w = qw_data(packed);
    const int64_t kp = nn__qk_pad(k);
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < k; i++)
            wf[j * k + i] =
                scale[j] * (float)w[(j / NN__QNR * kp / 4 + i / 4) * NN__QNR * 4 +
                                    (j % NN__QNR) * 4 + i % 4];
}

/* ----------------------------------------------------------- forward */

/* Scratch of one call: column sums, u8 activations, per-row parameters. */
typedef struct scratch {
    int32_t *wsum, *zp;
    float *sa;
    uint8_t *a;
    float *tmp;
    int32_t *acc; /* raw sums (pooled convolutions) */
} scratch;

static void scratch_free(scratch *s) {
    nn__free(s->wsum), nn__free(s->zp), nn__free(s->sa), nn__free(s->a), nn__free(s->tmp);
    nn__free(s->acc);
}

static bool alloc_n(void **p, int64_t n, size_t elem) {
    size_t bytes;
    if (!nn__size_mul((size_t)(n > 0 ? n : 1), elem, &bytes)) {
        nn__err(NN_ERR_OVERFLOW, "int8 scratch size overflows");
        return false;
    }
    *p = nn__malloc(bytes);
    return *p != NULL;
}

static bool check_layer(const nn__qlayer *L, const char *fn) {
    int64_t shape[3];
    nn__qw_shape(L->n, L->k, shape);
    if (!L->w || L->w->dtype != NN__QW_DTYPE || L->w->ndim != 3 || L->w->shape[0] != shape[0] ||
        L->w->shape[1] != shape[1] || L->w->shape[2] != shape[2] || !nn__is_contiguous(L->w) ||
        !L->w_scale || L->w_scale->dtype != NN_DTYPE_F32 || L->w_scale->numel != L->n ||
        !nn__is_contiguous(L->w_scale) ||
        (L->bias && (L->bias->dtype != NN_DTYPE_F32 || L->bias->numel != L->n ||
                     !nn__is_contiguous(L->bias)))) {
        nn__err(NN_ERR_SHAPE, "%s: quantized weights, scales or bias do not match [%lld, %lld]",
                fn, (long long)L->n, (long long)L->k);
        return false;
    }
    if (L->k > NN__QK_MAX) {
        nn__err(NN_ERR_LIMIT, "%s: in_features %lld exceeds the int8 limit %d", fn,
                (long long)L->k, NN__QK_MAX);
        return false;
    }
    return true;
}

static nn__qgemm layer_gemm(const nn__qlayer *L, const scratch *s) {
    nn__qgemm g = {.n = L->n,
                   .k = L->k,
                   .w = qw_data(L->w),
                   .wsum = s->wsum,
                   .w_scale = nn__f32(L->w_scale),
                   .bias = L->bias ? nn__f32(L->bias) : NULL,
                   .relu = L->relu,
                   .w7 = L->w7};
    return g;
}

/* Quantize n floats of x into q with the layer's static parameters or, when
 * dynamic, with ones from their range (written to *sa, *zp). */
static void quantize_run(const nn__qlayer *L, const nn__int8_kernels *k8, int64_t n,
                         const float *x, uint8_t *q, float *sa, int32_t *zp) {
    if (L->act_scale > 0.0f) {
        *sa = L->act_scale, *zp = L->act_zp;
    } else {
        float mn, mx;
        k8->minmax(n, x, &mn, &mx);
        nn__qparams_u8(mn, mx, sa, zp);
    }
    k8->quantize_u8(n, x, 1.0f / *sa, *zp, q);
}

/* Column sums of the layer's weights, needed only for a non-zero activation
 * zero point (sum qa*qw - za*wsum): inputs that follow a ReLU have zero
 * point 0, so their layers skip the pass over the weights. */
static void wsum_run(const nn__qlayer *L, const nn__int8_kernels *k8, const int32_t *zp,
                     int64_t nzp, int32_t *wsum) {
    for (int64_t i = 0; i < nzp; i++)
        if (zp[i] != 0) {
            k8->colsum(L->n, L->k, qw_data(L->w), L->w7, wsum);
            return;
        }
    memset(wsum, 0, (size_t)L->n * sizeof(int32_t));
}

void nn__qw_colsum(const nn__qlayer *L, int32_t *wsum) {
    nn__kernels()->int8.colsum(L->n, L->k, qw_data(L->w), L->w7, wsum);
}

void nn__qlinear_rows(const nn__qlayer *L, const float *x, int64_t rows, uint8_t *a, float *sa,
                      int32_t *zp, const int32_t *wsum, int32_t *wsum_tmp, float *y) {
    const nn__int8_kernels *k8 = &nn__kernels()->int8;
    const int64_t kp = nn__qk_pad(L->k);
    for (int64_t i = 0; i < rows; i++) {
        quantize_run(L, k8, L->k, x + i * L->k, a + i * kp, &sa[i], &zp[i]);
        memset(a + i * kp + L->k, 0, (size_t)(kp - L->k));
    }
    if (!wsum && !k8->folds_zp(rows, L->w7)) { /* else the gemm folds the zero points */
        wsum_run(L, k8, zp, rows, wsum_tmp);
        wsum = wsum_tmp;
    }
    scratch s = {.wsum = (int32_t *)wsum};
    nn__qgemm g = layer_gemm(L, &s);
    g.m = rows, g.a = a, g.lda = kp, g.a_scale = sa, g.a_zp = zp, g.a_step = 1;
    g.c = y, g.ldc = L->n;
    k8->gemm(&g);
}

nn_tensor *nn__qlinear(nn_tensor *x, const nn__qlayer *L, const char *fn) {
    if (!nn__check_f32(x, fn, "x") || !check_layer(L, fn)) return NULL;
    char s1[128];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != L->k)
        return NN__FAIL(NN_ERR_SHAPE, "%s: x %s does not end in in_features = %lld", fn,
                        nn__shape_str(x->shape, x->ndim, s1, sizeof s1), (long long)L->k);
    int64_t shape[NN_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = L->n;
    const int64_t rows = x->numel / (L->k ? L->k : 1), kp = nn__qk_pad(L->k);
    nn_tensor *out = nn__tensor_new(NN_DTYPE_F32, shape, x->ndim);
    nn_tensor *xc = out ? nn__contig(x) : NULL;
    scratch s = {0};
    if (!xc || !alloc_n((void **)&s.wsum, L->n, sizeof(int32_t)) ||
        !alloc_n((void **)&s.zp, rows, sizeof(int32_t)) ||
        !alloc_n((void **)&s.sa, rows, sizeof(float)) || !alloc_n((void **)&s.a, rows, (size_t)kp)) {
        scratch_free(&s);
        nn__tensor_release(xc);
        nn__tensor_release(out);
        return NULL;
    }
    nn__qlinear_rows(L, nn__f32(xc), rows, s.a, s.sa, s.zp, NULL, s.wsum, nn__f32(out));
    scratch_free(&s);
    nn__tensor_release(xc);
    return nn__track(out);
}

static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p) {
    return in + 2 * p < k ? -1 : (in + 2 * p - k) / s + 1;
}

/* One quantized convolution over images, one at a time: the layer, its
 * geometry and its scratch (set up once per call, then qconv_image per
 * image). */
typedef struct qconv_run {
    const nn__qlayer *L;
    int64_t c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, hp, wp, yh, yw;
    bool pool, direct1, hwc, wino, have_wsum;
    bool in_hwc, out_hwc; /* images channels-last ([h, w, c] floats), else planes */
    scratch s;
    uint8_t *imgp;
    int16_t *u; /* wino: the transformed weights (backend/int8.h) */
    nn__qgemm g;
    float sa;
    int32_t zp;
} qconv_run;

/* The output geometry of layer L on images [c, h, w], or false with the
 * error (naming fn) when the input does not fit it. */
static bool qconv_geometry(qconv_run *r, const nn__qlayer *L, const nn__qconv_spec *sp, int64_t h,
                           int64_t w, const char *fn, const nn_tensor *x) {
    char s1[128];
    memset(r, 0, sizeof *r);
    r->L = L, r->c = sp->c, r->h = h, r->w = w, r->kh = sp->kh, r->kw = sp->kw;
    r->sh = sp->sh, r->sw = sp->sw, r->ph = sp->ph, r->pw = sp->pw, r->pool = sp->pool;
    r->oh = out_size(h, r->kh, r->sh, r->ph), r->ow = out_size(w, r->kw, r->sw, r->pw);
    if (r->oh < 1 || r->ow < 1) {
        nn__err(NN_ERR_SHAPE, "%s: kernel %lldx%lld is bigger than the padded input %s", fn,
                (long long)r->kh, (long long)r->kw,
                nn__shape_str(x->shape, x->ndim, s1, sizeof s1));
        return false;
    }
    if (r->pool && (r->oh < 2 || r->ow < 2)) {
        nn__err(NN_ERR_SHAPE, "%s: output %lldx%lld is too small for the fused 2x2 pool", fn,
                (long long)r->oh, (long long)r->ow);
        return false;
    }
    r->hp = h + 2 * r->ph, r->wp = w + 2 * r->pw;
    r->yh = r->pool ? r->oh / 2 : r->oh, r->yw = r->pool ? r->ow / 2 : r->ow;
    return true;
}

/* The chain keeps each thread's scratch (every layer's buffers and the
 * intermediate images) in this nn__thread_scratch slot between calls:
 * allocating a few hundred KB per call made glibc hand them back to the
 * kernel (munmap or a heap trim) and fault them in again on every call,
 * which on a 56x56 image cost more than the convolutions. */
#define CHAIN_SLOT 5
_Static_assert(CHAIN_SLOT < NN__SCRATCH_SLOTS, "backend/threadpool.h has the chain's slot");

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Bytes of one run's scratch (qconv_carve), its intermediate image
 * included when `mid`; false when the size overflows. */
static bool qconv_bytes(const qconv_run *r, bool mid, size_t *bytes) {
    const nn__qlayer *L = r->L;
    const size_t kp = (size_t)nn__qk_pad(L->k), npix = (size_t)(r->oh * r->ow),
                 n = (size_t)L->n;
    size_t a, img, out, m = 0;
    /* im2row's slack past its input and output (backend/int8.h) */
    if (!nn__size_mul(npix, kp, &a) ||
        !nn__size_mul((size_t)(r->hp * r->wp), (size_t)r->c, &img) ||
        !nn__size_mul(npix, n * 4, &out) ||
        (mid && !nn__size_mul((size_t)(r->yh * r->yw), n * sizeof(float), &m)) ||
        a > SIZE_MAX / 8 || img > SIZE_MAX / 8 || out > SIZE_MAX / 8 || m > SIZE_MAX / 8)
        return false;
    *bytes = align64(n * sizeof(int32_t)) + align64(a + NN__Q_SLACK) +
             align64(img + NN__Q_SLACK) + align64(out) + align64(m);
    return true;
}

/* The kernels of a run whose geometry is set. */
static void qconv_kernels(qconv_run *r) {
    const nn__qlayer *L = r->L;
    const nn__int8_kernels *k8 = &nn__kernels()->int8;
    /* pooled one-channel layers (a CNN's first) skip im2row where the tier
     * can; conv_hwc takes full-range weights (backend/int8.h) */
    r->direct1 = r->pool && r->c == 1 && k8->conv1_takes(r->kh, r->kw, L->w7);
    r->hwc = r->pool && !L->w7 && !r->direct1 && k8->conv_hwc_takes(r->c, r->kw);
    /* pooled 3x3 stride-1 layers: the exact integer Winograd where the tier
     * runs it, its weights transformed once per call (shared by the
     * threads: nn__qconv2d_chain) */
    r->wino = r->pool && !r->direct1 && r->kh == 3 && r->kw == 3 && r->sh == 1 && r->sw == 1 &&
              k8->wino_takes(r->c, L->n);
}

/* Bytes of a run's transformed Winograd weights in the chain's scratch (0
 * when the run does not take the Winograd). */
static size_t qconv_wino_bytes(const qconv_run *r) {
    return r->wino ? align64((size_t)nn__qwg_elems(r->L->n, r->c) * 2) : 0;
}

/* Set up a run whose geometry and kernels are set on `bytes` (qconv_bytes)
 * of p; its intermediate image, when asked for, in *mid. r must not move
 * afterwards (its gemm points at r->sa, r->zp). */
static void qconv_carve(qconv_run *r, uint8_t *p, float **mid) {
    const nn__qlayer *L = r->L;
    const int64_t kp = nn__qk_pad(L->k), npix = r->oh * r->ow, c = r->c;
    memset(&r->s, 0, sizeof r->s);
    r->s.wsum = (int32_t *)p, p += align64((size_t)L->n * sizeof(int32_t));
    r->s.a = p, p += align64((size_t)(npix * kp) + NN__Q_SLACK);
    r->imgp = p, p += align64((size_t)(r->hp * r->wp * c) + NN__Q_SLACK);
    /* pooled: raw sums, the epilogue after the pool; else floats */
    if (r->pool) r->s.acc = (int32_t *)p;
    else r->s.tmp = (float *)p;
    p += align64((size_t)(npix * L->n) * 4);
    if (mid) *mid = (float *)p;
    memset(r->imgp + r->hp * r->wp * c, 0, NN__Q_SLACK);
    memset(r->s.wsum, 0, (size_t)L->n * sizeof(int32_t)); /* computed when a zero point needs it */
    r->have_wsum = false;
    r->g = layer_gemm(L, &r->s);
    nn__qgemm *g = &r->g;
    g->m = npix, g->a = r->s.a, g->lda = kp, g->a_scale = &r->sa, g->a_zp = &r->zp, g->a_step = 0;
    g->c = r->s.tmp, g->ldc = L->n, g->c32 = r->s.acc;
}

/* One image: x [c, h, w] -> y [n, yh, yw]; channels-last x [h, w, c] with
 * in_hwc, y [yh, yw, n] with out_hwc (the same floats, another order). */
static void qconv_image(qconv_run *r, const float *x, float *y) {
    const nn__qlayer *L = r->L;
    const nn__int8_kernels *k8 = &nn__kernels()->int8;
    const int64_t npix = r->oh * r->ow;
    nn__qgemm *g = &r->g;
    /* one scale and zero point per image; padding is the zero point (0.0) */
    if (L->act_scale > 0.0f) {
        r->sa = L->act_scale, r->zp = L->act_zp;
    } else {
        float mn, mx;
        k8->minmax(r->c * r->h * r->w, x, &mn, &mx);
        nn__qparams_u8(mn, mx, &r->sa, &r->zp);
    }
    if (r->in_hwc) { /* rows of w*c floats quantize in place: no transpose */
        const int64_t row = r->wp * r->c, lead = r->pw * r->c, wc = r->w * r->c;
        memset(r->imgp, r->zp, (size_t)(r->ph * row));
        for (int64_t yy = 0; yy < r->h; yy++) {
            uint8_t *d = r->imgp + (yy + r->ph) * row;
            memset(d, r->zp, (size_t)lead);
            k8->quantize_u8(wc, x + yy * wc, 1.0f / r->sa, r->zp, d + lead);
            memset(d + lead + wc, r->zp, (size_t)(row - lead - wc));
        }
        memset(r->imgp + (r->h + r->ph) * row, r->zp, (size_t)(r->ph * row));
    } else {
        k8->quantize_pad_hwc(x, r->c, r->h, r->w, r->ph, r->pw, 1.0f / r->sa, r->zp, r->imgp);
    }
    if (r->zp != 0 && !r->have_wsum) {
        k8->colsum(L->n, L->k, qw_data(L->w), L->w7, r->s.wsum);
        r->have_wsum = true;
    }
    /* one channel: conv, pool and epilogue straight from the padded image */
    if (r->direct1 &&
        k8->conv1_pool(r->imgp, r->wp, g->w, L->n, r->kh, r->kw, r->sh, r->sw, r->yh, r->yw,
                       r->s.wsum, r->sa, r->zp, g->w_scale, g->bias, L->relu, L->w7, y,
                       r->out_hwc ? L->n : 0))
        return;
    /* pooled 3x3 stride-1: the integer Winograd with the pool and epilogue */
    if (r->wino && k8->wino_pool(r->imgp, r->c, r->wp, r->yh, r->yw, r->u, L->n, r->s.wsum, r->sa,
                                 r->zp, g->w_scale, g->bias, L->relu, y, r->out_hwc ? L->n : 0))
        return;
    /* pooled layers read the activation rows in place where the tier can */
    if (!(r->hwc && k8->conv_hwc(r->imgp, r->c, r->wp, r->kh, r->kw, r->sh, r->sw, r->oh, r->ow,
                                 g->w, L->n, r->s.acc, L->n))) {
        k8->im2row(r->imgp, r->c, r->wp, r->kh, r->kw, r->sh, r->sw, r->oh, r->ow, r->s.a,
                   g->lda);
        g->c = r->out_hwc && !r->pool ? y : r->s.tmp; /* [pixels, O] is channels-last */
        k8->gemm(g);
    }
    if (r->pool) /* pool the raw sums, then the epilogue (backend/int8.h) */
        k8->pool_epilogue(r->s.acc, L->n, r->ow, r->yh, r->yw, r->s.wsum, r->sa, r->zp,
                          g->w_scale, g->bias, L->relu, y, r->out_hwc ? L->n : 0);
    else if (!r->out_hwc) /* [pixels, O] -> [O, pixels], in tiles that stay in L1 */
        for (int64_t p0 = 0; p0 < npix; p0 += 32)
            for (int64_t o0 = 0; o0 < L->n; o0 += 32)
                for (int64_t o = o0; o < L->n && o < o0 + 32; o++)
                    for (int64_t p = p0; p < npix && p < p0 + 32; p++)
                        y[o * npix + p] = r->s.tmp[p * L->n + o];
}

/* How a call's images meet the threads (measured on Zen 5, 2 threads:
 * q11-readme): two images or more run whole images per thread, one fork
 * and join per call, each thread's kernels single-threaded (the bench's CNN
 * at batch 256: 2.3x the per-kernel split); one image runs on the calling
 * thread alone, its kernels serial: splitting each of its small kernels
 * (a fork and join apiece) measured slower than one thread on both tiers
 * (the demo CNN at batch 1, 2 threads, idle, three paired runs: AVX-512
 * VNNI 25-27 -> 17-19 us, AVX2 51-56 -> 34-36 us; one thread 18-20 and
 * 37 us). */

/* One call: the geometry of its nl runs, and per thread t (of nt) its runs
 * r[t * nl ..) and intermediate images mid[t * nl ..) in that thread's
 * CHAIN_SLOT scratch, set up by the thread's first task (ready[t]); image
 * b's linear row is row b of ls (rows are disjoint). */
typedef struct chain_job {
    const qconv_run *geo;
    qconv_run *r;
    float **mid;
    bool *ready;
    _Atomic int failed; /* a thread could not get its scratch */
    int nl;
    size_t bytes; /* one thread's scratch */
    const nn__qlayer *lin;
    const float *X;
    float *Y;
    int64_t in_img, out_img, kp, nb;
    scratch *ls;
} chain_job;

/* Thread t's runs on its scratch (p, else this thread's CHAIN_SLOT);
 * false when the scratch cannot be had. */
static bool chain_thread_setup(chain_job *j, int t, uint8_t *p) {
    if (j->ready[t]) return true;
    if (!p) p = nn__thread_scratch(CHAIN_SLOT, j->bytes);
    if (!p) return false;
    qconv_run *r = j->r + (int64_t)t * j->nl;
    float **mid = j->mid + (int64_t)t * j->nl;
    for (int i = 0; i < j->nl; i++) {
        const bool has_mid = i + 1 < j->nl || j->lin;
        size_t b = 0;
        r[i] = j->geo[i];
        qconv_bytes(&r[i], has_mid, &b); /* checked by the caller */
        qconv_carve(&r[i], p, has_mid ? &mid[i] : NULL);
        p += b;
    }
    j->ready[t] = true;
    return true;
}

static void chain_image(chain_job *j, int t, int64_t b) {
    if (!chain_thread_setup(j, t, NULL)) {
        j->failed = 1;
        return;
    }
    qconv_run *r = j->r + (int64_t)t * j->nl;
    float **mid = j->mid + (int64_t)t * j->nl;
    const int nl = j->nl;
    for (int i = 0; i < nl; i++)
        qconv_image(&r[i], i ? mid[i - 1] : j->X + b * j->in_img,
                    i + 1 < nl || j->lin ? mid[i] : j->Y + b * j->out_img);
    if (j->lin) { /* the flattened image is the linear layer's row b */
        const nn__qlayer *lin = j->lin;
        scratch *ls = j->ls;
        quantize_run(lin, &nn__kernels()->int8, lin->k, mid[nl - 1], ls->a + b * j->kp,
                     &ls->sa[b], &ls->zp[b]);
        memset(ls->a + b * j->kp + lin->k, 0, (size_t)(j->kp - lin->k));
    }
}

static void chain_task(void *ctx, int64_t b, int thread) { chain_image(ctx, thread, b); }

/* The linear layer's rows through the GEMM at once, as nn__qlinear_rows. */
static void chain_linear(const chain_job *j) {
    const nn__qlayer *lin = j->lin;
    if (!lin || j->failed) return;
    const nn__int8_kernels *k8 = &nn__kernels()->int8;
    scratch *ls = j->ls;
    wsum_run(lin, k8, ls->zp, j->nb, ls->wsum);
    nn__qgemm g = layer_gemm(lin, ls);
    g.m = j->nb, g.a = ls->a, g.lda = j->kp, g.a_scale = ls->sa, g.a_zp = ls->zp, g.a_step = 1;
    g.c = j->Y, g.ldc = lin->n;
    k8->gemm(&g);
}

/* The whole call on one thread: every image, then the linear layer. */
static void chain_serial(chain_job *j) {
    for (int64_t b = 0; b < j->nb && !j->failed; b++) chain_image(j, 0, b);
    chain_linear(j);
}

static void chain_serial_task(void *ctx, int64_t t, int thread) {
    (void)t, (void)thread;
    chain_serial(ctx);
}

nn_tensor *nn__qconv2d_chain(nn_tensor *x, const nn__qlayer *const *L, const nn__qconv_spec *sp,
                             int nl, const nn__qlayer *lin, const char *fn) {
    if (nl < 1 || nl > NN__QCHAIN_MAX)
        return NN__FAIL(NN_ERR_INVALID, "%s: %d layers in a chain (1..%d)", fn, nl,
                        NN__QCHAIN_MAX);
    if (!nn__check_f32(x, fn, "x")) return NULL;
    char s1[128];
    if (x->ndim != 4)
        return NN__FAIL(NN_ERR_SHAPE, "%s: expected input [N,%lld,H,W], got %s", fn,
                        (long long)sp[0].c, nn__shape_str(x->shape, x->ndim, s1, sizeof s1));
    qconv_run geo[NN__QCHAIN_MAX];
    int64_t h = x->shape[2], w = x->shape[3], c = x->shape[1];
    size_t bytes = 0, ubytes = 0; /* one thread's scratch; the Winograd weights */
    for (int i = 0; i < nl; i++) {
        if (!check_layer(L[i], fn)) return NULL;
        if (i == 0 && c != sp[0].c)
            return NN__FAIL(NN_ERR_SHAPE, "%s: expected input [N,%lld,H,W], got %s", fn,
                            (long long)sp[0].c, nn__shape_str(x->shape, x->ndim, s1, sizeof s1));
        if (c != sp[i].c || L[i]->k != sp[i].c * sp[i].kh * sp[i].kw)
            return NN__FAIL(NN_ERR_SHAPE,
                            "%s: layer %d of the chain expects %lld input channels, gets %lld",
                            fn, i, (long long)sp[i].c, (long long)c);
        if (!qconv_geometry(&geo[i], L[i], &sp[i], h, w, fn, x)) return NULL;
        h = geo[i].yh, w = geo[i].yw, c = L[i]->n;
        /* between two layers of the chain, one image channels-last */
        geo[i].in_hwc = i > 0;
        geo[i].out_hwc = i + 1 < nl;
        qconv_kernels(&geo[i]);
        size_t b;
        const size_t ub = qconv_wino_bytes(&geo[i]);
        if (!qconv_bytes(&geo[i], i + 1 < nl || lin, &b) || bytes > SIZE_MAX / 4 - b ||
            ub > SIZE_MAX / 4 - ubytes)
            return NN__FAIL(NN_ERR_OVERFLOW, "%s: layer %d's scratch size overflows", fn, i);
        bytes += b, ubytes += ub;
    }
    if (lin && !check_layer(lin, fn)) return NULL;
    if (lin && lin->k != c * h * w)
        return NN__FAIL(NN_ERR_SHAPE,
                        "%s: the chain's %lld outputs per image do not match the linear layer's "
                        "in_features %lld",
                        fn, (long long)(c * h * w), (long long)lin->k);
    const int64_t nb = x->shape[0];
    const int64_t shape[4] = {nb, c, h, w}, lshape[2] = {nb, lin ? lin->n : 0};
    nn_tensor *out = lin ? nn__tensor_new(NN_DTYPE_F32, lshape, 2)
                         : nn__tensor_new(NN_DTYPE_F32, shape, 4);
    nn_tensor *xc = out ? nn__contig(x) : NULL;
    const int pool = nn__pool_threads();
    const int nt = pool > 1 && nb > 1 ? (nb < pool ? (int)nb : pool) : 1;
    qconv_run *r = NULL;
    float **mid = NULL;
    bool *ready = NULL;
    bool ok = xc != NULL && alloc_n((void **)&r, (int64_t)nt * nl, sizeof *r) &&
              alloc_n((void **)&mid, (int64_t)nt * nl, sizeof *mid) &&
              alloc_n((void **)&ready, nt, sizeof *ready);
    if (ready) memset(ready, 0, (size_t)nt * sizeof *ready);
    /* the linear layer's rows: u8 activations [nb, kp], parameters per row */
    const int64_t kp = lin ? nn__qk_pad(lin->k) : 0;
    scratch ls = {0};
    if (ok && lin)
        ok = alloc_n((void **)&ls.wsum, lin->n, sizeof(int32_t)) &&
             alloc_n((void **)&ls.zp, nb, sizeof(int32_t)) &&
             alloc_n((void **)&ls.sa, nb, sizeof(float)) && alloc_n((void **)&ls.a, nb, (size_t)kp);
    /* the caller (thread 0 of a parallel call) holds, past its own runs'
     * scratch, the Winograd weights all threads read */
    uint8_t *p0 = ok ? nn__thread_scratch(CHAIN_SLOT, bytes + ubytes) : NULL;
    if (ok && !p0) {
        nn__err(NN_ERR_NOMEM, "%s: out of memory for the chain's scratch (%zu bytes)", fn,
                bytes + ubytes);
        ok = false;
    }
    if (ok) {
        const nn__int8_kernels *k8 = &nn__kernels()->int8;
        uint8_t *u = p0 + bytes;
        for (int i = 0; i < nl; i++)
            if (geo[i].wino) {
                geo[i].u = (int16_t *)u;
                k8->wino_weight(L[i]->n, geo[i].c, qw_data(L[i]->w), L[i]->w7, geo[i].u);
                u += qconv_wino_bytes(&geo[i]);
            }
    }
    if (ok) {
        chain_job j = {.geo = geo,
                       .r = r,
                       .mid = mid,
                       .ready = ready,
                       .nl = nl,
                       .bytes = bytes,
                       .lin = lin,
                       .X = nn__f32(xc),
                       .Y = nn__f32(out),
                       .in_img = x->shape[1] * x->shape[2] * x->shape[3],
                       .out_img = c * h * w,
                       .kp = kp,
                       .nb = nb,
                       .ls = &ls};
        chain_thread_setup(&j, 0, p0);
        if (nt > 1) {
            nn__parallel_for_max(nb, nt, chain_task, &j);
            chain_linear(&j);
        } else { /* one task: its kernels run serially on any thread count */
            nn__parallel_for_max(1, 1, chain_serial_task, &j);
        }
        if (j.failed) {
            nn__err(NN_ERR_NOMEM, "%s: out of memory for the chain's scratch (%zu bytes)", fn,
                    bytes);
            ok = false;
        }
    }
    scratch_free(&ls);
    nn__free(r);
    nn__free(mid);
    nn__free(ready);
    nn__tensor_release(xc);
    if (!ok) {
        nn__tensor_release(out);
        return NULL;
    }
    return out;
}

nn_tensor *nn__qconv2d(nn_tensor *x, const nn__qlayer *L, int64_t c, int64_t kh, int64_t kw,
                       int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool pool, const char *fn) {
    const nn__qconv_spec sp = {c, kh, kw, sh, sw, ph, pw, pool};
    nn_tensor *y = nn__qconv2d_chain(x, &L, &sp, 1, NULL, fn);
    return y ? nn__track(y) : NULL;
}
