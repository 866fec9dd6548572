/* GPT (GPT-2 / nanoGPT): the module kind "GPT", its builder and its forward.
 *
 * The module tree is nanoGPT's, so the state dict carries its names:
 *
 *   GPT
 *   ├─ transformer  ModuleDict
 *   │   ├─ wte   Embedding(V, C)            ├─ h  ModuleList of ModuleDict
 *   │   ├─ wpe   Embedding(T, C)            │    ln_1 LayerNorm(C)
 *   │   └─ ln_f  LayerNorm(C)               │    attn {c_attn Linear(C, 3C), c_proj Linear(C, C)}
 *   └─ lm_head  Linear(C, V, no bias)       │    ln_2 LayerNorm(C)
 *       (weight tied to wte.weight)         │    mlp  {c_fc Linear(C, 4C), c_proj Linear(4C, C)}
 *
 * "GPT" is a container kind: nn_gpt_new adds the children, and a model
 * file's loader adds the ones the file lists. So nothing about the children
 * is trusted: every forward (and every session, lib/generate) resolves the
 * tensors it needs by name through nn__gpt_view, which checks each one's
 * dtype, shape and layout against the hyperparameters.
 *
 * Forward, x i64 [B, T] -> logits [B, T, V], through the public ops (so
 * autograd records it):
 *   h = wte[x] + wpe[0..T)                                      [B, T, C]
 *   per block:  a = LN1(h); qkv = a Wattnᵀ + b                  [B, T, 3C]
 *               q, k, v = views [B, H, T, D] of qkv (no copy)
 *               y = SDPA(q, k, v, causal)  -> [B, T, C]; h += y Wprojᵀ + b
 *               h += gelu_tanh(LN2(h) Wfcᵀ + b) Wmprojᵀ + b
 *   logits = LN_f(h) Wheadᵀ
 * Dropout (training only): after the embedding sum, on the attention
 * weights, and on both residual branches, as nanoGPT. */
#include "module_internal.h"
#include "ops/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { G_VOCAB, G_BLOCK, G_LAYER, G_HEAD, G_EMBD, G_DROPOUT, G_BIAS, G_TIE, G_NKEYS };
static const char *const gpt_keys[] = {"vocab_size", "block_size", "n_layer", "n_head",
                                       "n_embd",     "dropout",    "bias",    "tie_weights"};
static const double gpt_defaults[] = {NAN, NAN, NAN, NAN, NAN, 0, 1, 1};
/* Limits on hyperparameters (a file may say anything). */
static const double gpt_max[] = {2147483647.0, 1 << 24, 1 << 16, 1 << 16, 1 << 20};

#define GPT_LN_EPS 1e-5 /* GPT-2's LayerNorm eps */

static nn_status gpt_check_cfg(const double *v, const char *who) {
    for (int k = G_VOCAB; k <= G_EMBD; k++)
        if (!(v[k] == floor(v[k]) && v[k] >= 1 && v[k] <= gpt_max[k]))
            return nn__err(NN_ERR_INVALID, "%s: %s = %g, expected an integer in 1..%.0f", who,
                           gpt_keys[k], v[k], gpt_max[k]);
    if (fmod(v[G_EMBD], v[G_HEAD]) != 0)
        return nn__err(NN_ERR_INVALID, "%s: n_embd %.0f is not divisible by n_head %.0f", who,
                       v[G_EMBD], v[G_HEAD]);
    if (!(v[G_DROPOUT] >= 0 && v[G_DROPOUT] < 1))
        return nn__err(NN_ERR_INVALID, "%s: dropout = %g, expected a value in [0, 1)", who,
                       v[G_DROPOUT]);
    for (int k = G_BIAS; k <= G_TIE; k++)
        if (v[k] != 0 && v[k] != 1)
            return nn__err(NN_ERR_INVALID, "%s: %s = %g, expected 0 or 1", who, gpt_keys[k],
                           v[k]);
    return NN_OK;
}

static nn_status gpt_build(nn_module *m) { return gpt_check_cfg(m->cfg, "GPT"); }

/* ------------------------------------------------------------ the view */

/* The tensor at dotted path `name` under m, checked to be a contiguous
 * tensor of shape [d0] or [d0, d1] (d1 < 0: 1-D): f32, or for the weight
 * matrices (2-D: the embeddings, the head and the Linears' weights, which
 * nn_module_convert turns to 16 bits) also f16 or bf16. */
static nn_tensor *want(const nn_module *m, const char *name, int64_t d0, int64_t d1,
                       const char *fn) {
    nn_tensor *t = nn_module_get_parameter(m, name);
    if (!t)
        return NN__FAIL(NN_ERR_FORMAT, "%s: GPT has no parameter '%s' (a damaged model?)", fn,
                        name);
    int nd = d1 < 0 ? 1 : 2;
    const bool half = t->dtype == NN_DTYPE_F16 || t->dtype == NN_DTYPE_BF16;
    bool ok = (t->dtype == NN_DTYPE_F32 || (nd == 2 && half)) && t->ndim == nd &&
              t->shape[0] == d0 && (nd == 1 || t->shape[1] == d1);
    if (ok) { /* contiguous rows, for the raw kernels of lib/generate */
        ok = t->strides[nd - 1] == 1 && (nd == 1 || t->strides[0] == d1);
    }
    if (!ok) {
        char s[128];
        return NN__FAIL(NN_ERR_FORMAT,
                        "%s: GPT parameter '%s' is %s %s, expected a contiguous %s [%lld%s%.0lld]",
                        fn, name, nn_dtype_name(t->dtype),
                        nn__shape_str(t->shape, t->ndim, s, sizeof s),
                        nd == 2 ? "f32, f16 or bf16" : "f32", (long long)d0, nd == 2 ? ", " : "", nd == 2 ? (long long)d1 : 0LL);
    }
    return t;
}

/* The submodule at dotted path `path` under m, or NULL (no error set). */
static nn_module *sub_module(const nn_module *m, const char *path) {
    nn_module *cur = (nn_module *)m;
    while (cur && *path) {
        const char *dot = strchr(path, '.');
        size_t len = dot ? (size_t)(dot - path) : strlen(path);
        nn_module *next = NULL;
        for (int i = 0; i < cur->nchildren && !next; i++)
            if (strlen(cur->children[i].name) == len && !memcmp(cur->children[i].name, path, len))
                next = cur->children[i].m;
        cur = next;
        path += len + (dot ? 1 : 0);
    }
    return cur;
}

/* Projection `path` ([out, in]) as an int8 module: a QuantizedLinear of
 * those features (and a bias exactly when the GPT has biases; activations
 * dynamic per row or static from nn_quantize_static's calibration), or an
 * observer while nn_quantize_dynamic / _static runs. *mod stays NULL for anything
 * else (then the weight is looked up by name). false: a QuantizedLinear of
 * the wrong shape (error naming fn). */
static bool want_int8(const nn_module *m, const char *path, int64_t out, int64_t in, bool bias,
                      nn_module **mod, nn_tensor **w, nn_tensor **b, const char *fn) {
    nn_module *q = sub_module(m, path);
    nn__qlayer L;
    *mod = NULL;
    if (nn__quant_is_observer(q)) {
        *mod = q, *w = NULL, *b = NULL;
        return true;
    }
    if (!nn__qlinear_layer(q, &L)) return true;
    if (L.n != out || L.k != in || (L.bias != NULL) != bias || L.relu) {
        nn__err(NN_ERR_FORMAT,
                "%s: GPT projection '%s' is a QuantizedLinear [%lld, %lld]%s%s, expected "
                "[%lld, %lld]%s and no ReLU",
                fn, path, (long long)L.n, (long long)L.k, L.bias ? " with bias" : " without bias",
                L.relu ? ", relu" : "", (long long)out, (long long)in,
                bias ? " with bias" : " without bias");
        return false;
    }
    *mod = q, *w = (nn_tensor *)L.w, *b = (nn_tensor *)L.bias;
    return true;
}

void nn__gpt_view_free(nn__gpt_view *v) {
    if (!v) return;
    nn__free(v->blk);
    memset(v, 0, sizeof *v);
}

bool nn__is_gpt(const nn_module *m) { return m && m->kind && !strcmp(m->kind->type, "GPT"); }

nn_status nn__gpt_view_get(const nn_module *m, nn__gpt_view *v, const char *fn) {
    memset(v, 0, sizeof *v);
    if (!nn__mod_check(m, fn, "model")) return nn_last_status();
    if (!nn__is_gpt(m))
        return nn__err(NN_ERR_INVALID, "%s: the module is a %s, not a GPT", fn,
                       nn_module_type_name(m));
    v->V = (int64_t)m->cfg[G_VOCAB];
    v->T = (int64_t)m->cfg[G_BLOCK];
    v->L = (int64_t)m->cfg[G_LAYER];
    v->H = (int64_t)m->cfg[G_HEAD];
    v->C = (int64_t)m->cfg[G_EMBD];
    v->dropout = m->cfg[G_DROPOUT];
    v->bias = m->cfg[G_BIAS] != 0;
    v->eps = GPT_LN_EPS;
    const int64_t C = v->C, b = v->bias;
    v->blk = nn__calloc((size_t)v->L, sizeof *v->blk);
    if (!v->blk) return nn_last_status();
    char name[96];
#define WANT(dst, path, d0, d1)                                                                   \
    do {                                                                                           \
        if (!((dst) = want(m, (path), (d0), (d1), fn))) goto fail;                                 \
    } while (0)
    WANT(v->wte, "transformer.wte.weight", v->V, C);
    WANT(v->wpe, "transformer.wpe.weight", v->T, C);
    WANT(v->lnf_w, "transformer.ln_f.weight", C, -1);
    if (b) WANT(v->lnf_b, "transformer.ln_f.bias", C, -1);
    WANT(v->head, "lm_head.weight", v->V, C);
    for (int64_t l = 0; l < v->L; l++) {
        nn__gpt_block *k = &v->blk[l];
        struct {
            nn_tensor **w, **bb;
            const char *sub;
            int64_t out, in;
            nn_module **mod;
        } lin[] = {{&k->attn_w, &k->attn_b, "attn.c_attn", 3 * C, C, &k->attn_m},
                   {&k->aproj_w, &k->aproj_b, "attn.c_proj", C, C, &k->aproj_m},
                   {&k->fc_w, &k->fc_b, "mlp.c_fc", 4 * C, C, &k->fc_m},
                   {&k->mproj_w, &k->mproj_b, "mlp.c_proj", C, 4 * C, &k->mproj_m},
                   {&k->ln1_w, &k->ln1_b, "ln_1", C, -1, NULL},
                   {&k->ln2_w, &k->ln2_b, "ln_2", C, -1, NULL}};
        for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) {
            if (lin[i].mod) {
                snprintf(name, sizeof name, "transformer.h.%lld.%s", (long long)l, lin[i].sub);
                if (!want_int8(m, name, lin[i].out, lin[i].in, b, lin[i].mod, lin[i].w, lin[i].bb,
                               fn))
                    goto fail;
                if (*lin[i].mod) continue;
            }
            snprintf(name, sizeof name, "transformer.h.%lld.%s.weight", (long long)l, lin[i].sub);
            WANT(*lin[i].w, name, lin[i].out, lin[i].in);
            if (!b) continue;
            snprintf(name, sizeof name, "transformer.h.%lld.%s.bias", (long long)l, lin[i].sub);
            WANT(*lin[i].bb, name, lin[i].out, -1);
        }
    }
#undef WANT
    return NN_OK;
fail:;
    nn_status st = nn_last_status();
    nn__gpt_view_free(v);
    return st;
}

/* -------------------------------------------------------------- forward */

static nn_tensor *drop(nn_module *m, nn_tensor *x, double p) {
    return p > 0 && nn__mod_training(m) ? nn_dropout(x, p, true, m->gen) : x;
}

/* A projection: a plain Linear's weight and bias, or the int8 module. */
static nn_tensor *proj(nn_module *mod, nn_tensor *a, nn_tensor *w, nn_tensor *b) {
    return mod ? (a ? nn__track(nn__mod_forward(mod, a)) : NULL) : nn_linear(a, w, b);
}

static nn_tensor *gpt_forward(nn_module *m, nn_tensor *x) {
    const char *fn = "GPT";
    if (x->dtype != NN_DTYPE_I64 || x->ndim != 2) {
        char s[128];
        return NN__FAIL(NN_ERR_SHAPE, "%s: expected i64 token ids [B, T], got %s %s", fn,
                        nn_dtype_name(x->dtype), nn__shape_str(x->shape, x->ndim, s, sizeof s));
    }
    nn__gpt_view v;
    if (nn__gpt_view_get(m, &v, fn) != NN_OK) return NULL;
    const int64_t T = x->shape[1], C = v.C, H = v.H;
    nn_tensor *y = NULL;
    if (T < 1 || T > v.T) {
        nn__err(NN_ERR_SHAPE, "%s: sequence length %lld, expected 1..%lld (block_size)", fn,
                (long long)T, (long long)v.T);
        goto done;
    }
    const double p = v.dropout;
    const bool train = nn__mod_training(m);
    nn_tensor *pos = nn_arange(0, (double)T, 1, NN_DTYPE_I64);
    nn_tensor *h = drop(m, nn_add(nn_embedding(v.wte, x), nn_embedding(v.wpe, pos)), p);
    for (int64_t l = 0; l < v.L && h; l++) {
        const nn__gpt_block *k = &v.blk[l];
        nn_tensor *a = nn_layer_norm(h, &C, 1, k->ln1_w, k->ln1_b, v.eps);
        /* [B, T, 3C]: q, k, v heads read in place; out [B, T, C] */
        nn_tensor *att = nn__sdpa_packed(proj(k->attn_m, a, k->attn_w, k->attn_b), H, true,
                                         train ? p : 0, m->gen);
        h = nn_add(h, drop(m, proj(k->aproj_m, att, k->aproj_w, k->aproj_b), p));
        a = nn_layer_norm(h, &C, 1, k->ln2_w, k->ln2_b, v.eps);
        a = nn_gelu(proj(k->fc_m, a, k->fc_w, k->fc_b), true);
        h = nn_add(h, drop(m, proj(k->mproj_m, a, k->mproj_w, k->mproj_b), p));
    }
    y = nn_linear(nn_layer_norm(h, &C, 1, v.lnf_w, v.lnf_b, v.eps), v.head, NULL);
done:
    nn__gpt_view_free(&v);
    return y;
}

static double gpt_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)out;
    if (!in || in->ndim != 2) return 0;
    const double B = (double)in->shape[0], T = (double)in->shape[1], C = m->cfg[G_EMBD],
                 L = m->cfg[G_LAYER], V = m->cfg[G_VOCAB];
    /* per token: 12 C^2 per layer (qkv 3, proj 1, mlp 8) + head V C, times 2;
     * attention: 2 T C per layer (scores and weighted sum), times 2 */
    return B * T * (2.0 * (12.0 * C * C * L + V * C) + 4.0 * T * C * L / 2.0);
}

/* A model file's GPT: only its two children, and (once attached) every
 * tensor the forward reads, of the shapes its hyperparameters give. */
static nn_status gpt_check_child(const nn_module *m, const char *name, const nn_module *child) {
    (void)m, (void)child;
    if (strcmp(name, "transformer") && strcmp(name, "lm_head"))
        return nn__err(NN_ERR_FORMAT, "GPT: unexpected child '%.64s' (transformer, lm_head)",
                       name);
    return NN_OK;
}

static nn_status gpt_check_complete(const nn_module *m) {
    nn__gpt_view v;
    nn_status st = nn__gpt_view_get(m, &v, "GPT");
    nn__gpt_view_free(&v);
    return st;
}

const nn__mod_kind nn__kind_gpt = {.type = "GPT",
                                   .nkeys = G_NKEYS,
                                   .keys = gpt_keys,
                                   .defaults = gpt_defaults,
                                   .build = gpt_build,
                                   .forward = gpt_forward,
                                   .flops = gpt_flops,
                                   .container = true,
                                   .check_child = gpt_check_child,
                                   .check_complete = gpt_check_complete};

/* ------------------------------------------------------------ builder */

nn_status nn_gpt_config_init(nn_gpt_config *cfg) {
    if (!nn__check_ptr(cfg, "nn_gpt_config_init", "cfg")) return nn_last_status();
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = sizeof *cfg;
    cfg->vocab_size = 50257;
    cfg->block_size = 1024;
    cfg->n_layer = 12;
    cfg->n_head = 12;
    cfg->n_embd = 768;
    cfg->dropout = 0;
    cfg->bias = 1;
    cfg->tie_weights = 1;
    return nn__ok();
}

/* nanoGPT's init of one Linear (weight normal(0, std), bias zero). */
static nn_status init_linear(nn_module *lin, double std) {
    nn_status st = nn_init_normal(nn_module_get_parameter(lin, "weight"), 0, std, NULL);
    nn_tensor *b = nn_module_get_parameter(lin, "bias");
    nn_clear_error();
    if (st == NN_OK && b) st = nn_init_zeros(b);
    return st;
}

static nn_module *make_linear(int64_t in, int64_t out, bool bias, double std) {
    nn_module *l = nn_linear_new(in, out, bias);
    if (l && init_linear(l, std) != NN_OK) {
        nn_module_free(l);
        return NULL;
    }
    return l;
}

static nn_module *make_ln(int64_t c, bool bias) {
    return bias ? nn_layer_norm_new(&c, 1, GPT_LN_EPS, true)
                : nn__layer_norm_new_nobias(c, GPT_LN_EPS);
}

static nn_module *make_emb(int64_t n, int64_t c) {
    nn_module *e = nn_embedding_new(n, c);
    if (e && nn_init_normal(nn_module_get_parameter(e, "weight"), 0, 0.02, NULL) != NN_OK) {
        nn_module_free(e);
        return NULL;
    }
    return e;
}

/* dict[key] = child for each pair (children consumed); false on error. */
static bool dict_put(nn_module *dict, const char *key, nn_module *child) {
    return dict && nn_module_dict_set(dict, key, child) == NN_OK;
}

static nn_module *make_block(int64_t C, bool bias, double proj_std) {
    nn_module *blk = nn_module_dict_new(), *attn = nn_module_dict_new(),
              *mlp = nn_module_dict_new();
    bool ok = blk && attn && mlp && dict_put(attn, "c_attn", make_linear(C, 3 * C, bias, 0.02)) &&
              dict_put(attn, "c_proj", make_linear(C, C, bias, proj_std)) &&
              dict_put(mlp, "c_fc", make_linear(C, 4 * C, bias, 0.02)) &&
              dict_put(mlp, "c_proj", make_linear(4 * C, C, bias, proj_std)) &&
              dict_put(blk, "ln_1", make_ln(C, bias));
    if (ok) {
        ok = dict_put(blk, "attn", attn);
        attn = NULL;
        ok = ok && dict_put(blk, "ln_2", make_ln(C, bias));
        ok = ok && dict_put(blk, "mlp", mlp);
        mlp = NULL;
    }
    nn_module_free(attn);
    nn_module_free(mlp);
    if (!ok) {
        nn_module_free(blk);
        return NULL;
    }
    return blk;
}

/* cfg -> the "GPT" kind's values; NN_ERR_VERSION on an unknown struct_size. */
static nn_status cfg_values(const nn_gpt_config *cfg, double *v, const char *fn) {
    if (!nn__check_ptr(cfg, fn, "cfg")) return nn_last_status();
    if (cfg->struct_size != sizeof *cfg)
        return nn__err(NN_ERR_VERSION,
                       "%s: cfg->struct_size = %u, expected %u (fill it with nn_gpt_config_init)",
                       fn, (unsigned)cfg->struct_size, (unsigned)sizeof *cfg);
    if (cfg->reserved != 0)
        return nn__err(NN_ERR_INVALID, "%s: cfg->reserved = %d, expected 0", fn,
                       (int)cfg->reserved);
    v[G_VOCAB] = (double)cfg->vocab_size;
    v[G_BLOCK] = (double)cfg->block_size;
    v[G_LAYER] = (double)cfg->n_layer;
    v[G_HEAD] = (double)cfg->n_head;
    v[G_EMBD] = (double)cfg->n_embd;
    v[G_DROPOUT] = cfg->dropout;
    v[G_BIAS] = cfg->bias;
    v[G_TIE] = cfg->tie_weights;
    return gpt_check_cfg(v, fn);
}

nn_module *nn_gpt_new(const nn_gpt_config *cfg) {
    const char *fn = "nn_gpt_new";
    double v[G_NKEYS];
    if (cfg_values(cfg, v, fn) != NN_OK) return NULL;
    const int64_t V = cfg->vocab_size, T = cfg->block_size, L = cfg->n_layer, C = cfg->n_embd;
    const bool bias = cfg->bias != 0;
    /* parameters: (V + T) C + L (12 C^2 + 13 C) + 2 C (+ V C untied): capped
     * so that no element count overflows further down */
    const double np = (double)(V + T) * (double)C + (double)L * (12.0 * (double)C * (double)C) +
                      (cfg->tie_weights ? 0 : (double)V * (double)C);
    if (np > 4e12)
        return NN__FAIL(NN_ERR_LIMIT, "%s: %.3g parameters is beyond this library's limit", fn,
                        np);
    nn_module *m = nn__mod_new_kind(&nn__kind_gpt, v);
    nn_module *tr = nn_module_dict_new(), *h = nn_module_list_new();
    const double proj_std = 0.02 / sqrt(2.0 * (double)L);
    bool ok = m && tr && h && dict_put(tr, "wte", make_emb(V, C)) &&
              dict_put(tr, "wpe", make_emb(T, C));
    for (int64_t l = 0; ok && l < L; l++)
        ok = nn_module_list_append(h, make_block(C, bias, proj_std)) == NN_OK;
    if (ok) {
        ok = dict_put(tr, "h", h);
        h = NULL;
    }
    ok = ok && dict_put(tr, "ln_f", make_ln(C, bias));
    ok = ok && nn__module_add_child(m, "transformer", tr) == NN_OK;
    if (ok) {
        nn_module *head = make_linear(C, V, false, 0.02);
        ok = head && nn__module_add_child(m, "lm_head", head) == NN_OK;
        nn_module_free(head);
    }
    if (ok && cfg->tie_weights)
        ok = nn_module_tie(m, "lm_head.weight", "transformer.wte.weight") == NN_OK;
    nn_module_free(tr);
    nn_module_free(h);
    if (!ok) {
        nn_status st = nn_last_status();
        char msg[400];
        snprintf(msg, sizeof msg, "%s", nn_last_error());
        nn_module_free(m);
        if (st != NN_OK && !strstr(msg, fn)) nn__err(st, "%s: %s", fn, msg);
        else nn__err(st != NN_OK ? st : NN_ERR_STATE, "%s", msg);
        return NULL;
    }
    nn__call_ok();
    return m;
}

nn_status nn_gpt_get_config(const nn_module *gpt, nn_gpt_config *cfg) {
    const char *fn = "nn_gpt_get_config";
    if (!nn__mod_check(gpt, fn, "gpt") || !nn__check_ptr(cfg, fn, "cfg")) return nn_last_status();
    if (!nn__is_gpt(gpt))
        return nn__err(NN_ERR_INVALID, "%s: the module is a %s, not a GPT", fn,
                       nn_module_type_name(gpt));
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = sizeof *cfg;
    cfg->vocab_size = (int64_t)gpt->cfg[G_VOCAB];
    cfg->block_size = (int64_t)gpt->cfg[G_BLOCK];
    cfg->n_layer = (int64_t)gpt->cfg[G_LAYER];
    cfg->n_head = (int64_t)gpt->cfg[G_HEAD];
    cfg->n_embd = (int64_t)gpt->cfg[G_EMBD];
    cfg->dropout = gpt->cfg[G_DROPOUT];
    cfg->bias = (int32_t)gpt->cfg[G_BIAS];
    cfg->tie_weights = (int32_t)gpt->cfg[G_TIE];
    return nn__ok();
}
