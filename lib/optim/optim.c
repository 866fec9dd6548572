/* Optimizers: SGD, Adam, AdamW, RMSprop, Adagrad with parameter groups.
 *
 * Update rules follow PyTorch 1.13's single-tensor implementations, in the
 * same order of float operations where it matters. Each update is a plain
 * contiguous float loop over one parameter (vectorisable; a SIMD kernel can
 * replace it later without changing the bookkeeping around it). */
#include "backend/backend.h"
#include "optim_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define NOPT 13                     /* number of nn_optim_option values */

/* Per-parameter state buffers, named as in PyTorch's state dicts. */
enum {
    BUF_MOMENTUM,
    BUF_EXP_AVG,
    BUF_EXP_AVG_SQ,
    BUF_MAX_EXP_AVG_SQ,
    BUF_SQUARE_AVG,
    BUF_GRAD_AVG,
    BUF_SUM,
    NBUF
};
static const char *const buf_names[NBUF] = {
    "momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg", "grad_avg", "sum"};

static const char *const opt_names[NOPT] = {"lr",
                                            "momentum",
                                            "dampening",
                                            "nesterov",
                                            "weight_decay",
                                            "beta1",
                                            "beta2",
                                            "eps",
                                            "amsgrad",
                                            "alpha",
                                            "centered",
                                            "lr_decay",
                                            "initial_accumulator_value"};

typedef struct {
    nn_tensor *param;
    int group;
    bool has_state;
    double step; /* PyTorch keeps it as a float tensor */
    nn_tensor *buf[NBUF];
    bool mom_fresh; /* SGD momentum buffer allocated but not yet seeded */
} param_state;

struct nn_optim {
    nn__handle handle; /* NN__KIND_OPTIM */
    long refs;
    nn_optim_type type;
    double defaults[NOPT];
    double (*groups)[NOPT];
    int ngroups;
    param_state *ps;
    int64_t np;
};
NN__HANDLE_FIRST(struct nn_optim, handle);

/* ------------------------------------------------------ option tables */

#define B(o) (1u << (o))
static unsigned valid_options(nn_optim_type t) {
    unsigned common = B(NN_OPTIM_LR) | B(NN_OPTIM_WEIGHT_DECAY);
    switch (t) {
    case NN_OPTIM_TYPE_SGD:
        return common | B(NN_OPTIM_MOMENTUM) | B(NN_OPTIM_DAMPENING) | B(NN_OPTIM_NESTEROV);
    case NN_OPTIM_TYPE_ADAM:
    case NN_OPTIM_TYPE_ADAMW:
        return common | B(NN_OPTIM_BETA1) | B(NN_OPTIM_BETA2) | B(NN_OPTIM_EPS) |
               B(NN_OPTIM_AMSGRAD);
    case NN_OPTIM_TYPE_RMSPROP:
        return common | B(NN_OPTIM_MOMENTUM) | B(NN_OPTIM_EPS) | B(NN_OPTIM_ALPHA) |
               B(NN_OPTIM_CENTERED);
    case NN_OPTIM_TYPE_ADAGRAD:
        return common | B(NN_OPTIM_EPS) | B(NN_OPTIM_LR_DECAY) |
               B(NN_OPTIM_INITIAL_ACCUMULATOR_VALUE);
    }
    return 0;
}

static const char *type_name(nn_optim_type t) {
    static const char *const n[] = {"SGD", "Adam", "AdamW", "RMSprop", "Adagrad"};
    return (unsigned)t < 5 ? n[t] : "?";
}

static void set_defaults(nn_optim_type t, double *d, double lr) {
    memset(d, 0, sizeof(double) * NOPT);
    d[NN_OPTIM_LR] = lr;
    d[NN_OPTIM_BETA1] = 0.9;
    d[NN_OPTIM_BETA2] = 0.999;
    d[NN_OPTIM_EPS] = t == NN_OPTIM_TYPE_ADAGRAD ? 1e-10 : 1e-8;
    d[NN_OPTIM_ALPHA] = 0.99;
    if (t == NN_OPTIM_TYPE_ADAMW) d[NN_OPTIM_WEIGHT_DECAY] = 1e-2;
}

/* Bounds of each option; NN_OK or NN_ERR_INVALID naming fn, option and value. */
static nn_status check_value(const nn_optim *opt, nn_optim_option o, double v, const char *fn) {
    if ((unsigned)o >= NOPT) return nn__err(NN_ERR_INVALID, "%s: unknown option %d", fn, (int)o);
    if (!(valid_options(opt->type) & B(o)))
        return nn__err(NN_ERR_INVALID, "%s: option '%s' is not valid for %s", fn, opt_names[o],
                       type_name(opt->type));
    bool ok = isfinite(v);
    const char *want = "a finite value";
    switch (o) {
    case NN_OPTIM_NESTEROV:
    case NN_OPTIM_AMSGRAD:
    case NN_OPTIM_CENTERED:
        ok = v == 0.0 || v == 1.0;
        want = "0 or 1";
        break;
    case NN_OPTIM_BETA1:
    case NN_OPTIM_BETA2:
        ok = v >= 0.0 && v < 1.0;
        want = "a value in [0, 1)";
        break;
    case NN_OPTIM_DAMPENING: break;
    default:
        ok = ok && v >= 0.0;
        want = "a finite value >= 0";
        break;
    }
    if (!ok) return nn__err(NN_ERR_INVALID, "%s: %s = %g, expected %s", fn, opt_names[o], v, want);
    return NN_OK;
}

/* -------------------------------------------------- handles and groups */

bool nn__optim_check(const nn_optim *opt, const char *fn) {
    return nn__handle_check(opt, NN__KIND_OPTIM, fn, "opt");
}

void nn__optim_retain(nn_optim *opt) { opt->refs++; }

static void free_state(param_state *ps) {
    for (int b = 0; b < NBUF; b++) {
        nn__tensor_release(ps->buf[b]);
        ps->buf[b] = NULL;
    }
    ps->has_state = false;
    ps->mom_fresh = false;
    ps->step = 0.0;
}

void nn_optim_free(nn_optim *opt) {
    if (!opt || !nn__optim_check(opt, "nn_optim_free")) return;
    if (--opt->refs > 0) return;
    for (int64_t i = 0; i < opt->np; i++) {
        free_state(&opt->ps[i]);
        nn__tensor_release(opt->ps[i].param);
    }
    nn__free(opt->ps);
    nn__free(opt->groups);
    nn__handle_clear(&opt->handle);
    nn__free(opt);
}

/* Validate params[0..n) for a new group: f32, contiguous leaves, no duplicates. */
static nn_status check_params(const nn_optim *opt, nn_tensor *const *params, int64_t n,
                              const char *fn) {
    if (n <= 0)
        return nn__err(NN_ERR_INVALID, "%s: empty parameter list (n = %lld)", fn, (long long)n);
    if (!params) return nn__err(NN_ERR_NULL, "%s: argument 'params' is NULL", fn);
    for (int64_t i = 0; i < n; i++) {
        char what[48];
        snprintf(what, sizeof what, "params[%lld]", (long long)i);
        if (!nn__check_f32(params[i], fn, what)) return nn_last_status();
        if (params[i]->grad_fn)
            return nn__err(NN_ERR_INVALID, "%s: %s is not a leaf tensor (cannot be optimized)", fn,
                           what);
        if (!nn__is_contiguous(params[i]))
            return nn__err(NN_ERR_INVALID, "%s: %s is not contiguous", fn, what);
        for (int64_t j = 0; j < i; j++)
            if (params[j] == params[i])
                return nn__err(NN_ERR_INVALID, "%s: %s appears twice in the list", fn, what);
        for (int64_t j = 0; opt && j < opt->np; j++)
            if (opt->ps[j].param == params[i])
                return nn__err(NN_ERR_INVALID, "%s: %s is already in group %d", fn, what,
                               opt->ps[j].group);
    }
    return NN_OK;
}

static nn_status add_group(nn_optim *opt, nn_tensor *const *params, int64_t n, double lr,
                           const char *fn) {
    nn_status st = check_params(opt, params, n, fn);
    if (st) return st;
    if (!isfinite(lr) || lr < 0)
        return nn__err(NN_ERR_INVALID, "%s: lr = %g, expected a finite value >= 0", fn, lr);
    size_t total;
    if (!nn__size_add((size_t)opt->np, (size_t)n, &total) || total > (size_t)INT32_MAX)
        return nn__err(NN_ERR_LIMIT, "%s: too many parameters", fn);
    param_state *ps = nn__realloc(opt->ps, total * sizeof *ps);
    if (!ps) return NN_ERR_NOMEM;
    opt->ps = ps;
    double(*g)[NOPT] = nn__realloc(opt->groups, (size_t)(opt->ngroups + 1) * sizeof *g);
    if (!g) return NN_ERR_NOMEM;
    opt->groups = g;
    memcpy(g[opt->ngroups], opt->defaults, sizeof g[0]);
    g[opt->ngroups][NN_OPTIM_LR] = lr;
    for (int64_t i = 0; i < n; i++) {
        param_state *p = &opt->ps[opt->np + i];
        memset(p, 0, sizeof *p);
        p->param = params[i];
        nn__tensor_retain(params[i]);
        p->group = opt->ngroups;
    }
    opt->np += n;
    opt->ngroups++;
    return NN_OK;
}

nn_optim *nn_optim_new(nn_optim_type type, nn_tensor *const *params, int64_t n, double lr) {
    const char *fn = "nn_optim_new";
    if ((unsigned)type > NN_OPTIM_TYPE_ADAGRAD)
        return NN__FAIL(NN_ERR_INVALID, "%s: unknown optimizer type %d", fn, (int)type);
    nn_optim *opt = nn__calloc(1, sizeof *opt);
    if (!opt) return NULL;
    nn__handle_set(&opt->handle, NN__KIND_OPTIM);
    opt->refs = 1;
    opt->type = type;
    set_defaults(type, opt->defaults, lr);
    if (add_group(opt, params, n, lr, fn) != NN_OK) {
        nn_optim_free(opt);
        return NULL;
    }
    return opt;
}

nn_optim *nn_optim_new_module(nn_optim_type type, nn_module *module, double lr) {
    const char *fn = "nn_optim_new_module";
    if (!nn__check_ptr(module, fn, "module")) return NULL;
    int64_t n = nn_module_num_parameters(module);
    if (n < 0) return NULL;
    if (n == 0) return NN__FAIL(NN_ERR_INVALID, "%s: the module has no parameters", fn);
    nn_tensor **ps = nn__calloc((size_t)n, sizeof *ps);
    if (!ps) return NULL;
    for (int64_t i = 0; i < n; i++)
        if (!(ps[i] = nn_module_parameter(module, i, NULL))) {
            nn__free(ps);
            return NULL;
        }
    nn_optim *o = nn_optim_new(type, ps, n, lr);
    nn__free(ps);
    return o;
}

nn_optim *nn_sgd(nn_tensor *const *params, int64_t n, double lr, double momentum) {
    nn_optim *o = nn_optim_new(NN_OPTIM_TYPE_SGD, params, n, lr);
    if (o && momentum != 0.0 && nn_optim_set(o, NN_OPTIM_MOMENTUM, momentum) != NN_OK) {
        nn_optim_free(o);
        return NULL;
    }
    return o;
}

nn_optim *nn_adam(nn_tensor *const *params, int64_t n, double lr) {
    return nn_optim_new(NN_OPTIM_TYPE_ADAM, params, n, lr);
}

nn_optim *nn_adamw(nn_tensor *const *params, int64_t n, double lr, double weight_decay) {
    nn_optim *o = nn_optim_new(NN_OPTIM_TYPE_ADAMW, params, n, lr);
    if (o && nn_optim_set(o, NN_OPTIM_WEIGHT_DECAY, weight_decay) != NN_OK) {
        nn_optim_free(o);
        return NULL;
    }
    return o;
}

nn_optim *nn_rmsprop(nn_tensor *const *params, int64_t n, double lr) {
    return nn_optim_new(NN_OPTIM_TYPE_RMSPROP, params, n, lr);
}

nn_optim *nn_adagrad(nn_tensor *const *params, int64_t n, double lr) {
    return nn_optim_new(NN_OPTIM_TYPE_ADAGRAD, params, n, lr);
}

nn_optim_type nn_optim_get_type(const nn_optim *opt) {
    return nn__optim_check(opt, "nn_optim_get_type") ? opt->type : NN_OPTIM_TYPE_SGD;
}

nn_status nn_optim_add_group(nn_optim *opt, nn_tensor *const *params, int64_t n, double lr) {
    if (!nn__optim_check(opt, "nn_optim_add_group")) return nn_last_status();
    return add_group(opt, params, n, lr, "nn_optim_add_group");
}

int nn_optim_num_groups(const nn_optim *opt) {
    return nn__optim_check(opt, "nn_optim_num_groups") ? opt->ngroups : -1;
}

int64_t nn_optim_num_params(const nn_optim *opt) {
    return nn__optim_check(opt, "nn_optim_num_params") ? opt->np : -1;
}

nn_tensor *nn_optim_param(const nn_optim *opt, int64_t i) {
    if (!nn__optim_check(opt, "nn_optim_param")) return NULL;
    if (i < 0 || i >= opt->np)
        return NN__FAIL(NN_ERR_RANGE, "nn_optim_param: index %lld out of range [0, %lld)",
                        (long long)i, (long long)opt->np);
    return opt->ps[i].param;
}

nn_status nn_optim_set(nn_optim *opt, nn_optim_option option, double value) {
    const char *fn = "nn_optim_set";
    if (!nn__optim_check(opt, fn)) return nn_last_status();
    nn_status st = check_value(opt, option, value, fn);
    if (st) return st;
    opt->defaults[option] = value;
    for (int g = 0; g < opt->ngroups; g++) opt->groups[g][option] = value;
    return NN_OK;
}

static nn_status check_group(const nn_optim *opt, int group, const char *fn) {
    if (group < 0 || group >= opt->ngroups)
        return nn__err(NN_ERR_RANGE, "%s: group %d out of range [0, %d)", fn, group, opt->ngroups);
    return NN_OK;
}

nn_status nn_optim_set_group(nn_optim *opt, int group, nn_optim_option option, double value) {
    const char *fn = "nn_optim_set_group";
    if (!nn__optim_check(opt, fn)) return nn_last_status();
    nn_status st = check_group(opt, group, fn);
    if (!st) st = check_value(opt, option, value, fn);
    if (st) return st;
    opt->groups[group][option] = value;
    return NN_OK;
}

nn_status nn_optim_get(const nn_optim *opt, int group, nn_optim_option option, double *value) {
    const char *fn = "nn_optim_get";
    if (!nn__optim_check(opt, fn)) return nn_last_status();
    if (!value) return nn__err(NN_ERR_NULL, "%s: argument 'value' is NULL", fn);
    nn_status st = check_group(opt, group, fn);
    if (st) return st;
    if ((unsigned)option >= NOPT || !(valid_options(opt->type) & B(option)))
        return nn__err(NN_ERR_INVALID, "%s: option %d is not valid for %s", fn, (int)option,
                       type_name(opt->type));
    *value = opt->groups[group][option];
    return NN_OK;
}

nn_status nn_optim_zero_grad(nn_optim *opt) {
    if (!nn__optim_check(opt, "nn_optim_zero_grad")) return nn_last_status();
    NN__PROF_SPAN(NN__PROF_OPTIM, "nn_optim_zero_grad", NULL);
    for (int64_t i = 0; i < opt->np; i++) nn_tensor_zero_grad(opt->ps[i].param);
    return NN_OK;
}

/* ------------------------------------------------------ update rules */

/* A zero buffer of p's shape in slot b if it is not there yet. */
static bool ensure_buf(param_state *ps, int b) {
    if (!ps->buf[b]) ps->buf[b] = nn__zeros(NN_DTYPE_F32, ps->param->shape, ps->param->ndim);
    nn__tensor_mem_tag(ps->buf[b], NN_MEM_OPTIMIZER);
    return ps->buf[b] != NULL;
}

/* SGD and Adam/AdamW run in the backend's threaded SIMD kernels; the
 * per-step coefficients are computed here in double, then rounded, exactly
 * as the scalar loops did. */
static nn_status sgd_update(param_state *ps, const double *o, const float *restrict g,
                            float *restrict p, int64_t n) {
    const float mom = (float)o[NN_OPTIM_MOMENTUM];
    nn__sgd_hp hp = {(float)-o[NN_OPTIM_LR],
                     mom,
                     (float)(1.0 - o[NN_OPTIM_DAMPENING]),
                     (float)o[NN_OPTIM_WEIGHT_DECAY],
                     o[NN_OPTIM_NESTEROV] != 0.0,
                     ps->mom_fresh,
                     false};
    float *buf = NULL;
    if (mom != 0.0f) {
        ps->mom_fresh = false;
        buf = nn__f32(ps->buf[BUF_MOMENTUM]);
    }
    nn__kernels()->optim.sgd(n, p, g, buf, &hp);
    return NN_OK;
}

static nn_status adam_update(param_state *ps, const double *o, const float *restrict g,
                             float *restrict p, int64_t n, bool decoupled) {
    const double lr = o[NN_OPTIM_LR], b1 = o[NN_OPTIM_BETA1], b2 = o[NN_OPTIM_BETA2];
    const double wd = o[NN_OPTIM_WEIGHT_DECAY], step = ps->step;
    const bool ams = o[NN_OPTIM_AMSGRAD] != 0.0;
    nn__adam_hp hp = {(float)b1,
                      (float)b2,
                      (float)(1.0 - b1),
                      (float)(1.0 - b2),
                      (float)o[NN_OPTIM_EPS],
                      (float)wd,
                      (float)(1.0 - lr * wd),
                      (float)(-(lr / (1.0 - pow(b1, step)))),
                      (float)sqrt(1.0 - pow(b2, step)),
                      decoupled,
                      false};
    nn__kernels()->optim.adam(n, p, g, nn__f32(ps->buf[BUF_EXP_AVG]), nn__f32(ps->buf[BUF_EXP_AVG_SQ]),
                        ams ? nn__f32(ps->buf[BUF_MAX_EXP_AVG_SQ]) : NULL, &hp);
    return NN_OK;
}

static nn_status rmsprop_update(param_state *ps, const double *o, const float *restrict g,
                                float *restrict p, int64_t n) {
    const float alpha = (float)o[NN_OPTIM_ALPHA], c = (float)(1.0 - o[NN_OPTIM_ALPHA]);
    const float wd = (float)o[NN_OPTIM_WEIGHT_DECAY], eps = (float)o[NN_OPTIM_EPS];
    const float mom = (float)o[NN_OPTIM_MOMENTUM], nlr = (float)-o[NN_OPTIM_LR];
    const bool centered = o[NN_OPTIM_CENTERED] != 0.0;
    float *restrict sq = nn__f32(ps->buf[BUF_SQUARE_AVG]);
    float *restrict ga = centered ? nn__f32(ps->buf[BUF_GRAD_AVG]) : NULL;
    float *restrict buf = mom > 0.0f ? nn__f32(ps->buf[BUF_MOMENTUM]) : NULL;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] + wd * p[i];
        sq[i] = sq[i] * alpha + c * gi * gi;
        float avg;
        if (centered) {
            ga[i] = ga[i] * alpha + c * gi;
            avg = sqrtf(sq[i] - ga[i] * ga[i]);
        } else {
            avg = sqrtf(sq[i]);
        }
        avg += eps;
        if (buf) {
            buf[i] = buf[i] * mom + gi / avg;
            p[i] += nlr * buf[i];
        } else {
            p[i] += nlr * (gi / avg);
        }
    }
    return NN_OK;
}

static nn_status adagrad_update(param_state *ps, const double *o, const float *restrict g,
                                float *restrict p, int64_t n) {
    float *restrict sum = nn__f32(ps->buf[BUF_SUM]);
    const float wd = (float)o[NN_OPTIM_WEIGHT_DECAY], eps = (float)o[NN_OPTIM_EPS];
    const float nclr = (float)-(o[NN_OPTIM_LR] / (1.0 + (ps->step - 1.0) * o[NN_OPTIM_LR_DECAY]));
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] + wd * p[i];
        sum[i] += gi * gi;
        p[i] += nclr * (gi / (sqrtf(sum[i]) + eps));
    }
    return NN_OK;
}

/* Allocate every buffer this step needs before any parameter changes, so an
 * out-of-memory failure leaves all parameters untouched. */
static bool prepare_buffers(const nn_optim *opt, param_state *ps) {
    const double *o = opt->groups[ps->group];
    switch (opt->type) {
    case NN_OPTIM_TYPE_SGD:
        if (o[NN_OPTIM_MOMENTUM] != 0.0 && !ps->buf[BUF_MOMENTUM]) {
            if (!ensure_buf(ps, BUF_MOMENTUM)) return false;
            ps->mom_fresh = true;
        }
        return true;
    case NN_OPTIM_TYPE_ADAM:
    case NN_OPTIM_TYPE_ADAMW:
        return ensure_buf(ps, BUF_EXP_AVG) && ensure_buf(ps, BUF_EXP_AVG_SQ) &&
               (o[NN_OPTIM_AMSGRAD] == 0.0 || ensure_buf(ps, BUF_MAX_EXP_AVG_SQ));
    case NN_OPTIM_TYPE_RMSPROP:
        return ensure_buf(ps, BUF_SQUARE_AVG) &&
               (o[NN_OPTIM_CENTERED] == 0.0 || ensure_buf(ps, BUF_GRAD_AVG)) &&
               (o[NN_OPTIM_MOMENTUM] <= 0.0 || ensure_buf(ps, BUF_MOMENTUM));
    case NN_OPTIM_TYPE_ADAGRAD:
        if (!ps->buf[BUF_SUM]) {
            nn_tensor *t = nn__tensor_new(NN_DTYPE_F32, ps->param->shape, ps->param->ndim);
            if (!t) return false;
            float *d = nn__f32(t), v0 = (float)o[NN_OPTIM_INITIAL_ACCUMULATOR_VALUE];
            for (int64_t i = 0; i < t->numel; i++) d[i] = v0;
            ps->buf[BUF_SUM] = t;
            nn__tensor_mem_tag(t, NN_MEM_OPTIMIZER);
        }
        return true;
    }
    return false;
}

static nn_status update_one(nn_optim *opt, param_state *ps) {
    const double *o = opt->groups[ps->group];
    nn_tensor *gc = nn__contig(ps->param->grad);
    if (!gc) return nn_last_status();
    float *p = nn__f32(ps->param);
    const float *g = nn__f32(gc);
    int64_t n = ps->param->numel;
    double prev_step = ps->step;
    ps->step += 1.0;
    ps->has_state = true;
    nn_status st = NN_ERR_INVALID;
    switch (opt->type) {
    case NN_OPTIM_TYPE_SGD: st = sgd_update(ps, o, g, p, n); break;
    case NN_OPTIM_TYPE_ADAM: st = adam_update(ps, o, g, p, n, false); break;
    case NN_OPTIM_TYPE_ADAMW: st = adam_update(ps, o, g, p, n, true); break;
    case NN_OPTIM_TYPE_RMSPROP: st = rmsprop_update(ps, o, g, p, n); break;
    case NN_OPTIM_TYPE_ADAGRAD: st = adagrad_update(ps, o, g, p, n); break;
    }
    if (st) ps->step = prev_step; /* buffers could not be made: nothing was updated */
    nn__tensor_release(gc);
    return st;
}

nn_status nn_optim_step(nn_optim *opt) {
    const char *fn = "nn_optim_step";
    NN__PROF_SPAN(NN__PROF_OPTIM, fn, NULL);
    if (!nn__optim_check(opt, fn)) return nn_last_status();
    bool any = false;
    for (int64_t i = 0; i < opt->np; i++) {
        param_state *ps = &opt->ps[i];
        if (!ps->param->grad) continue;
        any = true;
        if (!nn__same_shape(ps->param->grad, ps->param))
            return nn__err(NN_ERR_SHAPE, "%s: gradient of parameter %lld has a different shape", fn,
                           (long long)i);
    }
    if (!any)
        return nn__err(NN_ERR_NO_GRAD, "%s: no parameter has a gradient (call nn_backward first)",
                       fn);
    for (int g = 0; g < opt->ngroups; g++) {
        const double *o = opt->groups[g];
        if (opt->type == NN_OPTIM_TYPE_SGD && o[NN_OPTIM_NESTEROV] != 0.0 &&
            (o[NN_OPTIM_MOMENTUM] <= 0.0 || o[NN_OPTIM_DAMPENING] != 0.0))
            return nn__err(NN_ERR_INVALID,
                           "%s: nesterov needs momentum > 0 and dampening = 0 (group %d: %g, %g)",
                           fn, g, o[NN_OPTIM_MOMENTUM], o[NN_OPTIM_DAMPENING]);
    }
    for (int64_t i = 0; i < opt->np; i++)
        if (opt->ps[i].param->grad && !prepare_buffers(opt, &opt->ps[i]))
            return nn__err(NN_ERR_NOMEM, "%s: out of memory allocating optimizer state", fn);
    bool prev = nn_set_grad_enabled(false);
    nn_status st = NN_OK;
    for (int64_t i = 0; i < opt->np && st == NN_OK; i++)
        if (opt->ps[i].param->grad) st = update_one(opt, &opt->ps[i]);
    nn_set_grad_enabled(prev);
    if (st && !nn__err_pending()) st = nn__err(st, "%s: update failed", fn);
    return st;
}

/* ------------------------------------------------------ state dicts */

static nn_status put_tensor_copy(nn_statedict *sd, const char *name, const nn_tensor *t) {
    nn_tensor *c = nn__clone(t);
    if (!c) return NN_ERR_NOMEM;
    nn_status st = nn_statedict_set(sd, name, c);
    nn__tensor_release(c);
    return st;
}

nn_statedict *nn_optim_state_dict(const nn_optim *opt) {
    const char *fn = "nn_optim_state_dict";
    if (!nn__optim_check(opt, fn)) return NULL;
    nn_statedict *sd = nn_statedict_new();
    if (!sd) return NULL;
    char name[96];
    nn_status st = NN_OK;
    for (int64_t i = 0; i < opt->np && !st; i++) {
        const param_state *ps = &opt->ps[i];
        if (!ps->has_state) continue;
        snprintf(name, sizeof name, "state.%lld.step", (long long)i);
        nn_tensor *s = nn__scalar_f32((float)ps->step);
        st = s ? nn_statedict_set(sd, name, s) : NN_ERR_NOMEM;
        nn__tensor_release(s);
        for (int b = 0; b < NBUF && !st; b++) {
            if (!ps->buf[b]) continue;
            snprintf(name, sizeof name, "state.%lld.%s", (long long)i, buf_names[b]);
            st = put_tensor_copy(sd, name, ps->buf[b]);
        }
    }
    unsigned valid = valid_options(opt->type);
    for (int g = 0; g < opt->ngroups && !st; g++) {
        for (int o = 0; o < NOPT && !st; o++) {
            if (!(valid & B(o))) continue;
            snprintf(name, sizeof name, "param_groups.%d.%s", g, opt_names[o]);
            st = nn__sd_put_double(sd, name, opt->groups[g][o]);
        }
        int64_t cnt = 0;
        for (int64_t i = 0; i < opt->np; i++) cnt += opt->ps[i].group == g;
        nn_tensor *idx = nn__tensor_new(NN_DTYPE_I64, &cnt, 1);
        if (!idx) st = NN_ERR_NOMEM;
        for (int64_t i = 0, k = 0; idx && i < opt->np; i++)
            if (opt->ps[i].group == g) nn__i64(idx)[k++] = i;
        snprintf(name, sizeof name, "param_groups.%d.params", g);
        if (!st) st = nn_statedict_set(sd, name, idx);
        nn__tensor_release(idx);
    }
    if (st) {
        nn_statedict_free(sd);
        if (!nn__err_pending()) nn__err(st, "%s: could not build the state dict", fn);
        return NULL;
    }
    return sd;
}

/* Staged state of one parameter while loading (committed only if all is valid). */
typedef struct {
    bool has_state;
    double step;
    nn_tensor *buf[NBUF];
} staged;

static void staged_free(staged *s, int64_t n) {
    for (int64_t i = 0; s && i < n; i++)
        for (int b = 0; b < NBUF; b++) nn__tensor_release(s[i].buf[b]);
    nn__free(s);
}

static nn_status load_param_state(const nn_optim *opt, const nn_statedict *sd, int64_t i,
                                  staged *out, const char *fn) {
    char name[96];
    snprintf(name, sizeof name, "state.%lld.step", (long long)i);
    nn_tensor *s = nn__sd_find(sd, name);
    if (!s) return NN_OK; /* no state yet */
    if (s->numel != 1 || s->dtype != NN_DTYPE_F32)
        return nn__err(NN_ERR_FORMAT, "%s: '%s' is not a one-element f32 tensor", fn, name);
    out->has_state = true;
    out->step = nn__get_flat(s, 0);
    const nn_tensor *p = opt->ps[i].param;
    for (int b = 0; b < NBUF; b++) {
        snprintf(name, sizeof name, "state.%lld.%s", (long long)i, buf_names[b]);
        nn_tensor *t = nn__sd_find(sd, name);
        if (!t) continue;
        if (t->dtype != NN_DTYPE_F32 || !nn__same_shape(t, p)) {
            char s1[128], s2[128];
            return nn__err(NN_ERR_SHAPE, "%s: '%s' has shape %s (%s), parameter %lld has %s (f32)",
                           fn, name, nn__shape_str(t->shape, t->ndim, s1, sizeof s1),
                           nn_dtype_name(t->dtype), (long long)i,
                           nn__shape_str(p->shape, p->ndim, s2, sizeof s2));
        }
        if (!(out->buf[b] = nn__clone(t))) return NN_ERR_NOMEM;
        nn__tensor_mem_tag(out->buf[b], NN_MEM_OPTIMIZER);
    }
    return NN_OK;
}

static nn_status load_groups(const nn_optim *opt, const nn_statedict *sd, double (*gv)[NOPT],
                             const char *fn) {
    char name[96];
    unsigned valid = valid_options(opt->type);
    for (int g = 0; g < opt->ngroups; g++) {
        memcpy(gv[g], opt->groups[g], sizeof gv[g]);
        for (int o = 0; o < NOPT; o++) {
            if (!(valid & B(o))) continue;
            snprintf(name, sizeof name, "param_groups.%d.%s", g, opt_names[o]);
            nn_status st = nn__sd_get_double(sd, name, &gv[g][o], fn);
            if (st) return st;
            if (check_value(opt, (nn_optim_option)o, gv[g][o], fn)) return NN_ERR_FORMAT;
        }
        snprintf(name, sizeof name, "param_groups.%d.params", g);
        nn_tensor *idx = nn__sd_find(sd, name);
        if (!idx) return nn__err(NN_ERR_NOT_FOUND, "%s: state entry '%s' is missing", fn, name);
        int64_t k = 0;
        bool ok = idx->dtype == NN_DTYPE_I64 && idx->ndim == 1;
        for (int64_t i = 0; ok && i < opt->np; i++)
            if (opt->ps[i].group == g) ok = k < idx->numel && (int64_t)nn__get_flat(idx, k++) == i;
        if (!ok || k != idx->numel)
            return nn__err(NN_ERR_INVALID, "%s: '%s' does not match this optimizer's group %d", fn,
                           name, g);
    }
    return NN_OK;
}

nn_status nn_optim_load_state_dict(nn_optim *opt, const nn_statedict *sd) {
    const char *fn = "nn_optim_load_state_dict";
    if (!nn__optim_check(opt, fn)) return nn_last_status();
    if (!nn__handle_check(sd, NN__KIND_STATEDICT, fn, "sd")) return nn_last_status();
    char name[96];
    snprintf(name, sizeof name, "param_groups.%d.lr", opt->ngroups);
    if (nn__sd_find(sd, name))
        return nn__err(NN_ERR_INVALID, "%s: the state has more than %d parameter groups", fn,
                       opt->ngroups);
    staged *stg = nn__calloc((size_t)opt->np, sizeof *stg);
    double(*gv)[NOPT] = nn__calloc((size_t)opt->ngroups, sizeof *gv);
    nn_status st = (stg && gv) ? NN_OK : NN_ERR_NOMEM;
    if (!st) st = load_groups(opt, sd, gv, fn);
    for (int64_t i = 0; i < opt->np && !st; i++) st = load_param_state(opt, sd, i, &stg[i], fn);
    if (!st) { /* commit: swap the staged buffers in */
        memcpy(opt->groups, gv, (size_t)opt->ngroups * sizeof *gv);
        for (int64_t i = 0; i < opt->np; i++) {
            param_state *ps = &opt->ps[i];
            free_state(ps);
            ps->has_state = stg[i].has_state;
            ps->step = stg[i].step;
            memcpy(ps->buf, stg[i].buf, sizeof ps->buf);
            memset(stg[i].buf, 0, sizeof stg[i].buf);
        }
    }
    staged_free(stg, opt->np);
    nn__free(gv);
    return st;
}
