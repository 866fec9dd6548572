/* Quantized layers and the module side of post-training quantization.
 *
 * QuantizedLinear and QuantizedConv2d hold int8 weights packed for the
 * backend (buffer "weight", NN__QW_DTYPE, shape nn__qw_shape(n, k); see
 * backend/int8.h for the layout), per-output-channel scales ("weight_scale",
 * f32 [n]) and an f32 bias ("bias" [n], when bias = 1). Their
 * hyperparameters say how activations are quantized: act_scale 0 means
 * dynamic (per row for Linear, per image for Conv2d), act_scale > 0 a static
 * scale with act_zero_point; relu = 1 applies a ReLU in the GEMM's epilogue
 * (a ReLU that followed the float layer in a Sequential, fused). Inference
 * only: no gradients flow through them.
 *
 * Quantizing a model (driven by lib/quant, which owns the loop over data):
 * nn__quant_prepare swaps every Linear and Conv2d (groups 1, dilation 1)
 * below the root for an observer that holds the float layer and its
 * quantized twin (a MultiheadAttention's in-projections first become three
 * float Linear children, observed alike; converting drops its float
 * in-projection parameters, transformer.c); forwards then record each layer's input range
 * (calibration) or compare the twin with the float layer on the same input
 * (the report), while the float output flows on; nn__quant_convert puts the
 * twins in place. */
#include "module_internal.h"
#include "ops/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------- helpers */

static bool cfg_int_in(const nn_module *m, const char *key, double v, double lo, double hi) {
    if (v == floor(v) && v >= lo && v <= hi) return true;
    nn__err(NN_ERR_INVALID, "%s: %s = %g, expected an integer in %.0f..%.0f", m->kind->type, key,
            v, lo, hi);
    return false;
}

static bool act_ok(const nn_module *m, double scale, double zp) {
    if (!(scale >= 0.0 && scale <= 3.4e38)) {
        nn__err(NN_ERR_INVALID, "%s: act_scale = %g, expected 0 (dynamic) or a finite scale > 0",
                m->kind->type, scale);
        return false;
    }
    return cfg_int_in(m, "act_zero_point", zp, 0, 255);
}

/* Register the quantized buffers of an [n, k] layer (zero weights, unit
 * scales, zero bias). */
static nn_status add_qbuffers(nn_module *m, int64_t n, int64_t k, bool bias) {
    int64_t ws[3];
    nn__qw_shape(n, k, ws);
    const char *names[3] = {"weight", "weight_scale", "bias"};
    for (int i = 0; i < (bias ? 3 : 2); i++) {
        nn_tensor *t = i == 0 ? nn__zeros(NN__QW_DTYPE, ws, 3) : nn__zeros(NN_DTYPE_F32, &n, 1);
        if (!t) return nn_last_status();
        if (i == 1) {
            float *s = nn__f32(t);
            for (int64_t j = 0; j < n; j++) s[j] = 1.0f;
        }
        nn_status st = nn__mod_add_buffer(m, names[i], t);
        if (st != NN_OK) {
            nn__tensor_release(t);
            return st;
        }
    }
    return NN_OK;
}

static nn_tensor *buf(const nn_module *m, int i) {
    return i < m->bufs.n ? m->bufs.e[i].t : NULL;
}

static double out_numel(const nn_tensor *out) { return out ? (double)out->numel : 0; }

/* ----------------------------------------------------- QuantizedLinear */

enum { QL_IN, QL_OUT, QL_BIAS, QL_RELU, QL_SCALE, QL_ZP, QL_WBITS };
static const char *const qlinear_keys[] = {"in_features", "out_features",   "bias",       "relu",
                                           "act_scale",   "act_zero_point", "weight_bits"};
static const double qlinear_defaults[] = {NAN, NAN, 1, 0, 0, 0, 8};

static nn_status qlinear_build(nn_module *m) {
    const double *c = m->cfg;
    if (!cfg_int_in(m, "in_features", c[QL_IN], 1, NN__Q_DEPTH_MAX) ||
        !cfg_int_in(m, "out_features", c[QL_OUT], 1, (double)(1LL << 40)) ||
        !cfg_int_in(m, "bias", c[QL_BIAS], 0, 1) || !cfg_int_in(m, "relu", c[QL_RELU], 0, 1) ||
        !act_ok(m, c[QL_SCALE], c[QL_ZP]) || !cfg_int_in(m, "weight_bits", c[QL_WBITS], 7, 8))
        return nn_last_status();
    return add_qbuffers(m, (int64_t)c[QL_OUT], (int64_t)c[QL_IN], c[QL_BIAS] != 0);
}

static nn__qlayer qlayer_of(const nn_module *m, int64_t n, int64_t k, bool bias, bool relu,
                            double scale, double zp, double wbits) {
    nn__qlayer L = {.w = buf(m, 0),
                    .w_scale = buf(m, 1),
                    .bias = bias ? buf(m, 2) : NULL,
                    .n = n,
                    .k = k,
                    .relu = relu,
                    .w7 = wbits == 7,
                    .act_scale = (float)scale,
                    .act_zp = (int32_t)zp};
    return L;
}

static nn_tensor *qlinear_forward(nn_module *m, nn_tensor *x) {
    const double *c = m->cfg;
    nn__qlayer L = qlayer_of(m, (int64_t)c[QL_OUT], (int64_t)c[QL_IN], c[QL_BIAS] != 0,
                             c[QL_RELU] != 0, c[QL_SCALE], c[QL_ZP], c[QL_WBITS]);
    return nn__qlinear(x, &L, "QuantizedLinear");
}

static double qlinear_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)in;
    return out_numel(out) * 2.0 * m->cfg[QL_IN];
}

const nn__mod_kind nn__kind_qlinear = {.type = "QuantizedLinear",
                                          .nkeys = 7,
                                          .keys = qlinear_keys,
                                          .defaults = qlinear_defaults,
                                          .build = qlinear_build,
                                          .forward = qlinear_forward,
                                          .flops = qlinear_flops};

/* ----------------------------------------------------- QuantizedConv2d */

enum {
    QC_IN,
    QC_OUT,
    QC_KH,
    QC_KW,
    QC_SH,
    QC_SW,
    QC_PH,
    QC_PW,
    QC_BIAS,
    QC_RELU,
    QC_SCALE,
    QC_ZP,
    QC_POOL,
    QC_WBITS
};
static const char *const qconv_keys[] = {
    "in_channels", "out_channels", "kernel_h",  "kernel_w", "stride_h",
    "stride_w",    "padding_h",    "padding_w", "bias",     "relu",
    "act_scale",   "act_zero_point", "pool",     "weight_bits"};
static const double qconv_defaults[] = {NAN, NAN, NAN, NAN, 1, 1, 0, 0, 1, 0, 0, 0, 0, 8};

static nn_status qconv_build(nn_module *m) {
    const double *c = m->cfg;
    for (int i = QC_IN; i <= QC_PW; i++)
        if (!cfg_int_in(m, qconv_keys[i], c[i], i >= QC_PH ? 0 : 1, 1 << 20))
            return nn_last_status();
    if (!cfg_int_in(m, "bias", c[QC_BIAS], 0, 1) || !cfg_int_in(m, "relu", c[QC_RELU], 0, 1) ||
        !cfg_int_in(m, "pool", c[QC_POOL], 0, 1) || !act_ok(m, c[QC_SCALE], c[QC_ZP]) ||
        !cfg_int_in(m, "weight_bits", c[QC_WBITS], 7, 8))
        return nn_last_status();
    const double k = c[QC_IN] * c[QC_KH] * c[QC_KW];
    if (k > NN__Q_DEPTH_MAX)
        return nn__err(NN_ERR_LIMIT,
                       "QuantizedConv2d: in_channels x kernel = %.0f exceeds the int8 limit %d", k,
                       NN__Q_DEPTH_MAX);
    return add_qbuffers(m, (int64_t)c[QC_OUT], (int64_t)k, c[QC_BIAS] != 0);
}

static nn_tensor *qconv_forward(nn_module *m, nn_tensor *x) {
    const double *c = m->cfg;
    const int64_t cin = (int64_t)c[QC_IN], kh = (int64_t)c[QC_KH], kw = (int64_t)c[QC_KW];
    nn__qlayer L = qlayer_of(m, (int64_t)c[QC_OUT], cin * kh * kw, c[QC_BIAS] != 0,
                             c[QC_RELU] != 0, c[QC_SCALE], c[QC_ZP], c[QC_WBITS]);
    return nn__qconv2d(x, &L, cin, kh, kw, (int64_t)c[QC_SH], (int64_t)c[QC_SW], (int64_t)c[QC_PH],
                       (int64_t)c[QC_PW], c[QC_POOL] != 0, "QuantizedConv2d");
}

static double qconv_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)in;
    return out_numel(out) * 2.0 * m->cfg[QC_IN] * m->cfg[QC_KH] * m->cfg[QC_KW];
}

const nn__mod_kind nn__kind_qconv = {.type = "QuantizedConv2d",
                                        .nkeys = 14,
                                        .keys = qconv_keys,
                                        .defaults = qconv_defaults,
                                        .build = qconv_build,
                                        .forward = qconv_forward,
                                        .flops = qconv_flops};


/* Sequential's chain of quantized convolutions: QuantizedConv2d children
 * with only Identity children between them (the ReLU and pool that
 * quantization fused leave Identities), each one's output channels the
 * next one's input channels, run image by image (ops/quant.h,
 * nn__qconv2d_chain), and a Flatten + QuantizedLinear right after them
 * (Identities between) whose rows are the images: each image's row is
 * quantized while it is in cache. Not while a summary runs (it reports per layer), and
 * not for fewer than two convolutions. Returns the children consumed (0:
 * none; *y untouched). */
int nn__mod_fuse_qconv(const nn__named_module *ch, int n, nn_tensor *x, nn_tensor **y) {
    if (n < 2 || ch[0].m->kind != &nn__kind_qconv || nn__summary_active() || x->ndim != 4)
        return 0;
    nn__qlayer L[NN__QCHAIN_MAX];
    const nn__qlayer *Lp[NN__QCHAIN_MAX];
    nn__qconv_spec sp[NN__QCHAIN_MAX];
    int nl = 0, used = 0;
    for (int i = 0; i < n && nl < NN__QCHAIN_MAX; i++) {
        const nn_module *m = ch[i].m;
        if (m->kind && !strcmp(m->kind->type, "Identity")) continue;
        if (m->kind != &nn__kind_qconv) break;
        const double *c = m->cfg;
        if (nl && c[QC_IN] != L[nl - 1].n) break;
        const int64_t cin = (int64_t)c[QC_IN], kh = (int64_t)c[QC_KH], kw = (int64_t)c[QC_KW];
        L[nl] = qlayer_of(m, (int64_t)c[QC_OUT], cin * kh * kw, c[QC_BIAS] != 0, c[QC_RELU] != 0,
                          c[QC_SCALE], c[QC_ZP], c[QC_WBITS]);
        Lp[nl] = &L[nl];
        sp[nl] = (nn__qconv_spec){cin,
                                  kh,
                                  kw,
                                  (int64_t)c[QC_SH],
                                  (int64_t)c[QC_SW],
                                  (int64_t)c[QC_PH],
                                  (int64_t)c[QC_PW],
                                  c[QC_POOL] != 0};
        nl++, used = i + 1;
    }
    if (nl < 2) return 0;
    /* then Flatten (the image's dimensions) and a QuantizedLinear on the
     * chain's output, when its in_features match: one row per image */
    int64_t per = 0, c = x->shape[1], h = x->shape[2], w = x->shape[3];
    for (int i = 0; i < nl; i++) {
        h = (h + 2 * sp[i].ph - sp[i].kh) / sp[i].sh + 1;
        w = (w + 2 * sp[i].pw - sp[i].kw) / sp[i].sw + 1;
        if (sp[i].pool) h /= 2, w /= 2;
        c = L[i].n;
        per = h >= 1 && w >= 1 && per >= 0 ? c * h * w : -1;
    }
    nn__qlayer lin;
    bool with_lin = false;
    int i = used, flat = 0;
    for (; i < n && per > 0; i++) {
        const nn_module *m = ch[i].m;
        if (m->kind && !strcmp(m->kind->type, "Identity")) continue;
        if (!flat && m->kind && !strcmp(m->kind->type, "Flatten") &&
            (m->cfg[0] == 1 || m->cfg[0] == -3) && (m->cfg[1] == -1 || m->cfg[1] == 3)) {
            flat = 1;
            continue;
        }
        if (flat && m->kind == &nn__kind_qlinear && m->cfg[QL_IN] == (double)per) {
            with_lin = nn__qlinear_layer(m, &lin);
            used = i + 1;
        }
        break;
    }
    NN__PROF_SPAN(NN__PROF_MODULE, "QuantizedConv2d chain", ch[0].m);
    *y = nn__qconv2d_chain(x, Lp, sp, nl, with_lin ? &lin : NULL, "QuantizedConv2d");
    return used;
}

/* ------------------------------------------------ quantizing a layer */

/* The quantized twin of a Linear or Conv2d (dynamic activations), or NULL
 * with NN_ERR_UNSUPPORTED when the layer has no int8 form (grouped or
 * dilated convolutions, depth past the int8 limit). */
static nn_module *quantize_layer(const nn_module *f, const char *fn) {
    const char *type = nn__module_type(f);
    const nn_tensor *w = nn__mod_param(f, "weight"), *b = nn__mod_param(f, "bias");
    const double *c = f->cfg;
    nn_module *q = NULL;
    int64_t n, k;
    /* 7-bit weights where the running tier prefers them (backend/int8.h) */
    const bool w7 = nn__qw_prefer_w7();
    const double wbits = w7 ? 7 : 8;
    if (!strcmp(type, "Linear")) {
        /* Linear keys: in_features, out_features, bias */
        double v[] = {c[0], c[1], c[2], 0, 0, 0, wbits};
        n = (int64_t)c[1], k = (int64_t)c[0];
        if (k > NN__Q_DEPTH_MAX) return NN__FAIL(NN_ERR_UNSUPPORTED, "%s: too deep", fn);
        q = nn__mod_new_kind(&nn__kind_qlinear, v);
    } else {
        /* Conv2d keys: in, out, kh, kw, sh, sw, ph, pw, dh, dw, groups, bias */
        if (c[8] != 1 || c[9] != 1 || c[10] != 1 || c[0] * c[2] * c[3] > NN__Q_DEPTH_MAX)
            return NN__FAIL(NN_ERR_UNSUPPORTED, "%s: no int8 form", fn);
        double v[] = {c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[11], 0, 0, 0, 0, wbits};
        n = (int64_t)c[1], k = (int64_t)(c[0] * c[2] * c[3]);
        q = nn__mod_new_kind(&nn__kind_qconv, v);
    }
    if (!q) return NULL;
    /* Conv2d weights [O, C, KH, KW] go to the int8 depth order (i*KW + j)*C
     * + c (channels last, backend/int8.h im2row). */
    nn_tensor *wc = q->kind == &nn__kind_qconv ? nn__tensor_new(NN_DTYPE_F32, w->shape, 4)
                                              : nn__contig(w);
    nn_tensor *src = wc && q->kind == &nn__kind_qconv ? nn__contig(w) : NULL;
    if (src) {
        const int64_t C = w->shape[1], KH = w->shape[2], KW = w->shape[3];
        const float *from = nn__f32(src);
        float *to = nn__f32(wc);
        for (int64_t o = 0; o < n; o++)
            for (int64_t ch = 0; ch < C; ch++)
                for (int64_t i = 0; i < KH; i++)
                    for (int64_t j = 0; j < KW; j++)
                        to[o * k + (i * KW + j) * C + ch] = from[o * k + (ch * KH + i) * KW + j];
    }
    nn_status st = wc && (src || q->kind != &nn__kind_qconv)
                       ? nn__qw_quantize(nn__f32(wc), n, k, w7, buf(q, 0), nn__f32(buf(q, 1)), fn)
                       : nn_last_status();
    nn__tensor_release(src);
    nn__tensor_release(wc);
    if (st == NN_OK && b) {
        nn_tensor *bc = nn__contig(b);
        if (bc) memcpy(nn__f32(buf(q, 2)), nn__f32(bc), (size_t)n * sizeof(float));
        else st = nn_last_status();
        nn__tensor_release(bc);
    }
    if (st != NN_OK) {
        nn_module_free(q);
        return NULL;
    }
    return q;
}

static bool eligible(const nn_module *m) {
    if (!m->kind) return false;
    /* f32 weights only: quantize_layer reads them as floats (a layer already
     * converted to f16 / bf16 stays as it is) */
    const nn_tensor *w = nn__mod_param(m, "weight");
    if (!w || w->dtype != NN_DTYPE_F32) return false;
    const char *t = m->kind->type;
    if (!strcmp(t, "Linear")) return m->cfg[0] <= NN__Q_DEPTH_MAX;
    if (!strcmp(t, "Conv2d"))
        return m->cfg[8] == 1 && m->cfg[9] == 1 && m->cfg[10] == 1 &&
               m->cfg[0] * m->cfg[2] * m->cfg[3] <= NN__Q_DEPTH_MAX;
    return false;
}

/* ----------------------------------------------------------- observer */

/* An observer's cfg (not saved: observers never reach a file). */
enum { OB_MIN, OB_MAX, OB_ERR, OB_REF, OB_MODE, OB_SEEN };
enum { MODE_CALIBRATE = 0, MODE_REPORT = 1 };

typedef struct qentry {
    char *path;            /* dotted name of the layer */
    nn_module *parent;     /* borrowed */
    char *name;            /* child name in parent */
    nn_module *observer;   /* owned reference */
    nn_module *relu_owner; /* Sequential holding a fused ReLU (borrowed), or NULL */
    char *relu_name;
    char *pool_name; /* a fused MaxPool2d(2) of the same Sequential, or NULL */
    nn_module *mha;  /* the MultiheadAttention (borrowed) whose in-projection this
                        is (a child the plan added), or NULL */
} qentry;

struct nn__qplan {
    qentry *e;
    int n, cap;
    bool converted;
};

static nn_module *ob_float(const nn_module *o) { return o->children[0].m; }
static nn_module *ob_quant(const nn_module *o) { return o->children[1].m; }

static bool twin_relu(const nn_module *q) {
    return q->kind == &nn__kind_qlinear ? q->cfg[QL_RELU] != 0 : q->cfg[QC_RELU] != 0;
}

static nn_tensor *observer_forward(nn_module *o, nn_tensor *x) {
    nn_tensor *y = nn__mod_forward(ob_float(o), x);
    if (!y) return NULL;
    if (o->cfg[OB_MODE] == MODE_CALIBRATE) {
        nn_tensor *xc = nn__contig(x);
        if (!xc) {
            nn__tensor_release(y);
            return NULL;
        }
        const float *p = nn__f32(xc);
        double mn = o->cfg[OB_MIN], mx = o->cfg[OB_MAX];
        for (int64_t i = 0; i < xc->numel; i++) { /* NaN compares false: skipped */
            if (!o->cfg[OB_SEEN] || p[i] < mn) mn = p[i];
            if (!o->cfg[OB_SEEN] || p[i] > mx) mx = p[i];
            if (p[i] == p[i]) o->cfg[OB_SEEN] = 1;
        }
        o->cfg[OB_MIN] = mn, o->cfg[OB_MAX] = mx;
        nn__tensor_release(xc);
        return nn__track(y);
    }
    /* report: the twin against the float layer (+ its fused ReLU), same input */
    nn_tensor *q = nn__mod_forward(ob_quant(o), x);
    if (!q) {
        nn__tensor_release(y);
        return NULL;
    }
    const float *a = nn__f32(q), *b = nn__f32(y);
    const bool relu = twin_relu(ob_quant(o));
    const nn_module *t = ob_quant(o);
    const bool pool = t->kind == &nn__kind_qconv && t->cfg[QC_POOL] != 0;
    double err = o->cfg[OB_ERR], ref = o->cfg[OB_REF];
    for (int64_t i = 0; i < q->numel && (pool || i < y->numel); i++) {
        float want;
        if (pool) { /* y [N, O, H, W], q [N, O, H/2, W/2]: the window's max */
            const int64_t qw = q->shape[3], qh = q->shape[2], H = y->shape[2], W = y->shape[3];
            const int64_t plane = i / (qh * qw), py = i / qw % qh, px = i % qw;
            const float *w0 = b + (plane * H + 2 * py) * W + 2 * px;
            want = w0[0];
            const float cand[3] = {w0[1], w0[W], w0[W + 1]};
            for (int k = 0; k < 3; k++)
                if (cand[k] > want || cand[k] != cand[k]) want = cand[k];
        } else {
            want = b[i];
        }
        want = relu && !(want > 0.0f) && want == want ? 0.0f : want;
        double d = fabs((double)a[i] - (double)want);
        if (d > err || d != d) err = d;
        if (fabs((double)want) > ref) ref = fabs((double)want);
    }
    o->cfg[OB_ERR] = err, o->cfg[OB_REF] = ref;
    nn__tensor_release(q);
    return nn__track(y);
}

static const nn__mod_kind kind_observer = {.type = "QuantObserver",
                                           .forward = observer_forward,
                                           .container = true};

/* --------------------------------------------------------------- plans */

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = nn__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static char *join_path(const char *prefix, const char *name) {
    size_t a = strlen(prefix), b = strlen(name), n;
    if (!nn__size_add(a + 1, b + 1, &n)) return NULL;
    char *d = nn__malloc(n);
    if (d) snprintf(d, n, "%s%s%s", prefix, a ? "." : "", name);
    return d;
}

static nn_status plan_push(nn__qplan *p, qentry e) {
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 8;
        qentry *ne = nn__calloc((size_t)cap, sizeof *ne);
        if (!ne) return NN_ERR_NOMEM;
        if (p->n) memcpy(ne, p->e, (size_t)p->n * sizeof *ne);
        nn__free(p->e);
        p->e = ne, p->cap = cap;
    }
    p->e[p->n++] = e;
    return NN_OK;
}

/* Wrap child i of m (an eligible layer) in an observer. */
static nn_status observe(nn__qplan *p, nn_module *m, int i, const char *path, const char *fn) {
    nn_module *f = m->children[i].m;
    nn_module *q = quantize_layer(f, fn);
    if (!q) return nn_last_status();
    nn_module *o = nn__mod_new_kind(&kind_observer, NULL);
    qentry e = {.parent = m};
    nn_status st = o ? NN_OK : nn_last_status();
    if (st == NN_OK) {
        nn_module_retain(f);
        st = nn__mod_attach(o, "float", f, fn); /* consumes the new reference to f */
    }
    if (st == NN_OK) st = nn__mod_attach(o, "quant", q, fn);
    else nn_module_free(q);
    q = NULL;
    /* a ReLU right after the layer in a Sequential is fused into the twin */
    if (st == NN_OK && !strcmp(nn__module_type(m), "Sequential") && i + 1 < m->nchildren &&
        m->children[i + 1].m->kind && !strcmp(m->children[i + 1].m->kind->type, "ReLU")) {
        nn_module *t = ob_quant(o);
        t->cfg[t->kind == &nn__kind_qlinear ? QL_RELU : QC_RELU] = 1;
        e.relu_owner = m;
        e.relu_name = dup_str(m->children[i + 1].name);
        if (!e.relu_name) st = NN_ERR_NOMEM;
        /* and a 2x2 stride-2 max pool after the ReLU, into a convolution */
        const nn_module *mp = i + 2 < m->nchildren ? m->children[i + 2].m : NULL;
        if (st == NN_OK && t->kind == &nn__kind_qconv && mp && mp->kind &&
            !strcmp(mp->kind->type, "MaxPool2d") && mp->cfg[0] == 2 && mp->cfg[1] == 2 &&
            mp->cfg[2] == 2 && mp->cfg[3] == 2 && mp->cfg[4] == 0 && mp->cfg[5] == 0 &&
            mp->cfg[6] == 1 && mp->cfg[7] == 1 && mp->cfg[8] == 0) {
            t->cfg[QC_POOL] = 1;
            e.pool_name = dup_str(m->children[i + 2].name);
            if (!e.pool_name) st = NN_ERR_NOMEM;
        }
    }
    if (st == NN_OK) {
        e.path = dup_str(path), e.name = dup_str(m->children[i].name);
        if (!e.path || !e.name) st = NN_ERR_NOMEM;
    }
    if (st == NN_OK) {
        nn_module_retain(o);
        e.observer = o;
        st = plan_push(p, e);
        if (st != NN_OK) nn_module_free(o);
    }
    if (st == NN_OK) {
        nn_module_retain(o);
        st = nn__mod_replace_child(m, e.name, o, fn); /* consumes one reference */
        if (st != NN_OK) { /* the entry stays; the float child is still in place */
            p->e[p->n - 1].parent = NULL;
        }
        nn_module_free(o);
        return st;
    }
    nn__free(e.path), nn__free(e.name), nn__free(e.relu_name), nn__free(e.pool_name);
    nn_module_free(o);
    return st;
}

/* A MultiheadAttention's in-projections: three float Linear children
 * q_proj / k_proj / v_proj (copies of its in-projection rows, which its
 * forward then runs instead of its parameters), each observed like any
 * layer. On failure the MHA is as before. */
static nn_status observe_mha(nn__qplan *p, nn_module *m, const char *prefix, const char *fn) {
    static const char *const names[3] = {"q_proj", "k_proj", "v_proj"};
    nn_module *f[3];
    nn_status st = nn__mha_float_projections(m, f);
    for (int i = 0; i < 3; i++) {
        if (st) {
            nn_module_free(f[i]);
            continue;
        }
        st = nn__mod_attach(m, names[i], f[i], fn); /* consumes f[i] */
        char *path = st ? NULL : join_path(prefix, names[i]);
        if (!st && !path) st = NN_ERR_NOMEM;
        if (!st) st = observe(p, m, m->nchildren - 1, path, fn);
        if (!st) p->e[p->n - 1].mha = m;
        nn__free(path);
    }
    if (st) nn__mha_unquantize(m);
    return st;
}

static nn_status walk(nn__qplan *p, nn_module *m, const char *prefix, const char *fn) {
    if (nn__mha_quantizable(m)) {
        nn_status st = observe_mha(p, m, prefix, fn);
        if (st != NN_OK) return st;
    }
    for (int i = 0; i < m->nchildren; i++) {
        nn_module *c = m->children[i].m;
        char *path = join_path(prefix, m->children[i].name);
        if (!path) return NN_ERR_NOMEM;
        /* a GPT's head stays as it is: its weight is the token embedding's
         * (tied), and the decode session reads it as a matrix */
        if (nn__is_gpt(m) && !strcmp(m->children[i].name, "lm_head")) {
            nn__free(path);
            continue;
        }
        nn_status st = eligible(c) ? observe(p, m, i, path, fn)
                       : c->kind == &kind_observer ? NN_OK
                                                   : walk(p, c, path, fn);
        nn__free(path);
        if (st != NN_OK) return st;
    }
    return NN_OK;
}

nn__qplan *nn__quant_prepare(nn_module *root, const char *fn) {
    if (!nn__mod_check(root, fn, "model")) return NULL;
    if (eligible(root) || root->kind == &nn__kind_qlinear || root->kind == &nn__kind_qconv)
        return NN__FAIL(NN_ERR_INVALID,
                        "%s: model is a single %s layer; wrap it in a Sequential to quantize it",
                        fn, nn__module_type(root));
    nn__qplan *p = nn__calloc(1, sizeof *p);
    if (!p) return NULL;
    nn_status st = walk(p, root, "", fn);
    if (st == NN_OK && p->n == 0)
        st = nn__err(NN_ERR_INVALID, "%s: the model has no Linear or Conv2d layer to quantize",
                     fn);
    if (st != NN_OK) {
        nn__quant_free(p);
        return NULL;
    }
    return p;
}

void nn__quant_mode(nn__qplan *p, bool report) {
    for (int i = 0; i < p->n; i++) p->e[i].observer->cfg[OB_MODE] = report;
}

nn_status nn__quant_set_static(nn__qplan *p, const char *fn) {
    for (int i = 0; i < p->n; i++) {
        nn_module *o = p->e[i].observer, *t = ob_quant(o);
        if (!o->cfg[OB_SEEN])
            return nn__err(NN_ERR_INVALID,
                           "%s: layer '%s' saw no finite input during calibration", fn,
                           p->e[i].path);
        float scale;
        int32_t zp;
        nn__q_act_params((float)o->cfg[OB_MIN], (float)o->cfg[OB_MAX], &scale, &zp);
        const bool lin = t->kind == &nn__kind_qlinear;
        t->cfg[lin ? QL_SCALE : QC_SCALE] = scale;
        t->cfg[lin ? QL_ZP : QC_ZP] = zp;
    }
    return NN_OK;
}

nn_status nn__quant_convert(nn__qplan *p, const char *fn) {
    for (int i = 0; i < p->n; i++) {
        qentry *e = &p->e[i];
        if (!e->parent) continue;
        nn_module *t = ob_quant(e->observer);
        nn_module_retain(t);
        nn_status st = nn__mod_replace_child(e->parent, e->name, t, fn);
        if (st == NN_OK && e->mha) nn__mha_finish_quantized(e->mha); /* after its third */
        if (st == NN_OK && e->relu_owner) {
            nn_module *id = nn_identity_new();
            st = id ? nn__mod_replace_child(e->relu_owner, e->relu_name, id, fn) : nn_last_status();
        }
        if (st == NN_OK && e->pool_name) {
            nn_module *id = nn_identity_new();
            st = id ? nn__mod_replace_child(e->relu_owner, e->pool_name, id, fn) : nn_last_status();
        }
        if (st != NN_OK) return st;
        e->parent = NULL; /* done: nothing to restore */
    }
    p->converted = true;
    return NN_OK;
}

void nn__quant_free(nn__qplan *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) {
        qentry *e = &p->e[i];
        if (e->parent && e->mha) { /* the MHA's own parameters serve again */
            nn__mha_unquantize(e->mha);
        } else if (e->parent) { /* not converted: put the float layer back */
            nn_module *f = ob_float(e->observer);
            nn_module_retain(f);
            nn__mod_replace_child(e->parent, e->name, f, "nn__quant_free");
        }
        nn_module_free(e->observer);
        nn__free(e->path), nn__free(e->name), nn__free(e->relu_name), nn__free(e->pool_name);
    }
    nn__free(p->e);
    nn__free(p);
}

/* One line per layer:
 *   <path>  <type>  act <dynamic | scale s zp z>  max|err| e  max|y| r  (e/r %) */
char *nn__quant_report(const nn__qplan *p, const char *tail) {
    size_t cap = 256 + (tail ? strlen(tail) : 0), len = 0;
    for (int i = 0; i < p->n; i++) cap += strlen(p->e[i].path) + 160;
    char *s = nn__malloc(cap);
    if (!s) return NULL;
    len += (size_t)snprintf(s + len, cap - len, "%-16s %-16s %-26s %12s %12s %8s\n", "layer",
                            "int8 kind", "activations", "max|err|", "max|y|", "err/max");
    for (int i = 0; i < p->n; i++) {
        const nn_module *o = p->e[i].observer, *t = ob_quant(o);
        const bool lin = t->kind == &nn__kind_qlinear;
        const double sc = t->cfg[lin ? QL_SCALE : QC_SCALE], zp = t->cfg[lin ? QL_ZP : QC_ZP];
        char act[64];
        if (sc > 0) snprintf(act, sizeof act, "static %.4g zp %.0f", sc, zp);
        else snprintf(act, sizeof act, "dynamic per %s", lin ? "row" : "image");
        len += (size_t)snprintf(s + len, cap - len, "%-16s %-16s %-26s %12.4g %12.4g %7.3f%%\n",
                                p->e[i].path, nn__module_type(t), act, o->cfg[OB_ERR],
                                o->cfg[OB_REF],
                                o->cfg[OB_REF] > 0 ? 100.0 * o->cfg[OB_ERR] / o->cfg[OB_REF] : 0.0);
    }
    if (tail) snprintf(s + len, cap - len, "%s", tail);
    return s;
}

int nn__quant_count(const nn__qplan *p) { return p->n; }

bool nn__qlinear_layer(const nn_module *m, nn__qlayer *L) {
    if (!m || m->kind != &nn__kind_qlinear) return false;
    const double *c = m->cfg;
    *L = qlayer_of(m, (int64_t)c[QL_OUT], (int64_t)c[QL_IN], c[QL_BIAS] != 0, c[QL_RELU] != 0,
                   c[QL_SCALE], c[QL_ZP], c[QL_WBITS]);
    return true;
}

bool nn__quant_is_observer(const nn_module *m) { return m && m->kind == &kind_observer; }
