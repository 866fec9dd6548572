/* Learning-rate schedules, mirroring PyTorch 1.13's lr_scheduler classes:
 * the same recurrences (chainable forms) evaluated in the same order in
 * double, so the rates agree to the last bits when stepped once per epoch. */
#include "optim_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>


typedef enum {
    K_STEP,
    K_MULTISTEP,
    K_EXP,
    K_COSINE,
    K_WARM,
    K_LINEAR,
    K_ONECYCLE,
    K_PLATEAU
} sched_kind;

struct nn_sched {
    nn__handle handle; /* NN__KIND_SCHED */
    sched_kind kind;
    nn_optim *opt;
    int ngroups;
    double *base_lrs;
    int64_t last_epoch;
    /* parameters (meaning per kind) */
    double gamma, eta_min, f0, f1, f2, f3;
    int64_t i0, i1, i2;
    int64_t *milestones;
    int64_t nmilestones;
    /* counters */
    double t_cur, t_i;   /* warm restarts */
    bool cycle_momentum; /* one-cycle */
    int mom_option;
    double mom_base, mom_max;
    double best;                              /* plateau */
    int64_t num_bad_epochs, cooldown_counter; /* plateau */
};
NN__HANDLE_FIRST(struct nn_sched, handle);

static double group_lr(const nn_sched *s, int g) {
    double v = NAN;
    nn_optim_get(s->opt, g, NN_OPTIM_LR, &v);
    return v;
}

/* Python's a % b for b > 0 (non-negative result). */
static int64_t pymod(int64_t a, int64_t b) {
    int64_t r = a % b;
    return r < 0 ? r + b : r;
}

/* ---------------------------------------------------- closed forms */

/* One-cycle interpolation at `step` between per-phase start and end values
 * (two phases: warm-up to step pct_start * total - 1, then annealing). */
static double one_cycle_anneal(const nn_sched *s, int64_t step, const double *from,
                               const double *to) {
    /* i0 total_steps, f1 pct_start, i1 anneal */
    double ends[2] = {s->f1 * (double)s->i0 - 1.0, (double)(s->i0 - 1)};
    double start_step = 0.0;
    for (int i = 0; i < 2; i++) {
        if ((double)step <= ends[i] || i == 1) {
            double pct = ((double)step - start_step) / (ends[i] - start_step);
            if (s->i1 == NN_ANNEAL_COS)
                return to[i] + (from[i] - to[i]) / 2.0 * (cos(M_PI * pct) + 1.0);
            return (to[i] - from[i]) * pct + from[i];
        }
        start_step = ends[i];
    }
    return NAN;
}

static double one_cycle_lr(const nn_sched *s, int64_t step) {
    /* f0 max_lr, f2 div_factor, f3 final_div_factor */
    double initial = s->f0 / s->f2, min_lr = initial / s->f3;
    double from[2] = {initial, s->f0}, to[2] = {s->f0, min_lr};
    return one_cycle_anneal(s, step, from, to);
}

/* Cycled momentum (or Adam's beta1), inverse to the rate: max -> base -> max. */
static nn_status one_cycle_set_momentum(nn_sched *s) {
    double from[2] = {s->mom_max, s->mom_base}, to[2] = {s->mom_base, s->mom_max};
    double m = one_cycle_anneal(s, s->last_epoch, from, to);
    for (int g = 0; g < s->ngroups; g++) {
        nn_status st = nn_optim_set_group(s->opt, g, (nn_optim_option)s->mom_option, m);
        if (st) return st;
    }
    return NN_OK;
}

/* The new rate of group g at s->last_epoch, from its current rate lr. */
static double next_lr(const nn_sched *s, int g, double lr) {
    int64_t e = s->last_epoch;
    double base = s->base_lrs[g];
    switch (s->kind) {
    case K_STEP: return (e == 0 || e % s->i0 != 0) ? lr : lr * s->gamma;
    case K_MULTISTEP: {
        int64_t cnt = 0;
        for (int64_t i = 0; i < s->nmilestones; i++) cnt += s->milestones[i] == e;
        return cnt ? lr * pow(s->gamma, (double)cnt) : lr;
    }
    case K_EXP: return e == 0 ? lr : lr * s->gamma;
    case K_COSINE: {
        int64_t T = s->i0;
        if (e == 0) return lr;
        if (pymod(e - 1 - T, 2 * T) == 0)
            return lr + (base - s->eta_min) * (1.0 - cos(M_PI / (double)T)) / 2.0;
        return (1.0 + cos(M_PI * (double)e / (double)T)) /
                   (1.0 + cos(M_PI * (double)(e - 1) / (double)T)) * (lr - s->eta_min) +
               s->eta_min;
    }
    case K_WARM:
        return s->eta_min + (base - s->eta_min) * (1.0 + cos(M_PI * s->t_cur / s->t_i)) / 2.0;
    case K_LINEAR: {
        double sf = s->f0, ef = s->f1;
        if (e == 0) return lr * sf;
        if (e > s->i0) return lr;
        return lr * (1.0 + (ef - sf) / ((double)s->i0 * sf + (double)(e - 1) * (ef - sf)));
    }
    case K_ONECYCLE: return one_cycle_lr(s, e);
    case K_PLATEAU: return lr;
    }
    return lr;
}

/* Advance one epoch and write the new rates into the optimizer. */
static nn_status advance(nn_sched *s, const char *fn) {
    if (s->kind == K_ONECYCLE && s->last_epoch + 1 > s->i0)
        return nn__err(NN_ERR_STATE, "%s: stepped %lld times, past total_steps = %lld", fn,
                       (long long)(s->last_epoch + 1), (long long)s->i0);
    s->last_epoch++;
    if (s->kind == K_WARM) {
        if (s->last_epoch == 0) {
            s->t_cur = 0.0;
            s->t_i = (double)s->i0;
        } else {
            s->t_cur += 1.0;
            if (s->t_cur >= s->t_i) {
                s->t_cur -= s->t_i;
                s->t_i *= (double)s->i1;
            }
        }
    }
    for (int g = 0; g < s->ngroups; g++) {
        double lr = next_lr(s, g, group_lr(s, g));
        nn_status st = nn_optim_set_group(s->opt, g, NN_OPTIM_LR, lr < 0 ? 0 : lr);
        if (st) return st;
    }
    return s->cycle_momentum ? one_cycle_set_momentum(s) : NN_OK;
}

/* --------------------------------------------------- construction */

static nn_sched *sched_new(nn_optim *opt, sched_kind kind, const char *fn) {
    if (!nn__optim_check(opt, fn)) return NULL;
    nn_sched *s = nn__calloc(1, sizeof *s);
    int ng = nn_optim_num_groups(opt);
    double *base = s ? nn__calloc((size_t)ng, sizeof *base) : NULL;
    if (!base) {
        nn__free(s);
        return NULL;
    }
    nn__handle_set(&s->handle, NN__KIND_SCHED);
    s->kind = kind;
    s->opt = opt;
    nn__optim_retain(opt);
    s->ngroups = ng;
    s->base_lrs = base;
    s->last_epoch = -1;
    for (int g = 0; g < ng; g++) base[g] = group_lr(s, g);
    return s;
}

/* The epoch-0 step every PyTorch scheduler constructor performs. */
static nn_sched *sched_start(nn_sched *s, const char *fn) {
    if (!s) return NULL;
    if (advance(s, fn) != NN_OK) {
        nn_sched_free(s);
        return NULL;
    }
    return s;
}

static bool bad(bool cond, const char *fn, const char *what, double v) {
    if (cond) nn__err(NN_ERR_INVALID, "%s: %s = %g is out of range", fn, what, v);
    return cond;
}

nn_sched *nn_sched_step_lr(nn_optim *opt, int64_t step_size, double gamma) {
    const char *fn = "nn_sched_step_lr";
    if (bad(step_size < 1, fn, "step_size", (double)step_size) ||
        bad(!isfinite(gamma) || gamma < 0, fn, "gamma", gamma))
        return NULL;
    nn_sched *s = sched_new(opt, K_STEP, fn);
    if (s) {
        s->i0 = step_size;
        s->gamma = gamma;
    }
    return sched_start(s, fn);
}

nn_sched *nn_sched_multistep(nn_optim *opt, const int64_t *milestones, int64_t n, double gamma) {
    const char *fn = "nn_sched_multistep";
    if (bad(n < 0 || n > 1000000, fn, "n", (double)n) ||
        bad(!isfinite(gamma) || gamma < 0, fn, "gamma", gamma))
        return NULL;
    if (n > 0 && !milestones) return NN__FAIL(NN_ERR_NULL, "%s: argument 'milestones' is NULL", fn);
    nn_sched *s = sched_new(opt, K_MULTISTEP, fn);
    if (!s) return NULL;
    s->gamma = gamma;
    s->nmilestones = n;
    s->milestones = nn__calloc(n ? (size_t)n : 1, sizeof *s->milestones);
    if (!s->milestones) {
        nn_sched_free(s);
        return NULL;
    }
    if (n) memcpy(s->milestones, milestones, (size_t)n * sizeof *milestones);
    return sched_start(s, fn);
}

nn_sched *nn_sched_exponential(nn_optim *opt, double gamma) {
    const char *fn = "nn_sched_exponential";
    if (bad(!isfinite(gamma) || gamma < 0, fn, "gamma", gamma)) return NULL;
    nn_sched *s = sched_new(opt, K_EXP, fn);
    if (s) s->gamma = gamma;
    return sched_start(s, fn);
}

nn_sched *nn_sched_cosine(nn_optim *opt, int64_t t_max, double eta_min) {
    const char *fn = "nn_sched_cosine";
    if (bad(t_max < 1, fn, "t_max", (double)t_max) ||
        bad(!isfinite(eta_min) || eta_min < 0, fn, "eta_min", eta_min))
        return NULL;
    nn_sched *s = sched_new(opt, K_COSINE, fn);
    if (s) {
        s->i0 = t_max;
        s->eta_min = eta_min;
    }
    return sched_start(s, fn);
}

nn_sched *nn_sched_cosine_warm_restarts(nn_optim *opt, int64_t t_0, int64_t t_mult,
                                        double eta_min) {
    const char *fn = "nn_sched_cosine_warm_restarts";
    if (bad(t_0 < 1, fn, "t_0", (double)t_0) || bad(t_mult < 1, fn, "t_mult", (double)t_mult) ||
        bad(!isfinite(eta_min) || eta_min < 0, fn, "eta_min", eta_min))
        return NULL;
    nn_sched *s = sched_new(opt, K_WARM, fn);
    if (s) {
        s->i0 = t_0;
        s->i1 = t_mult;
        s->eta_min = eta_min;
    }
    return sched_start(s, fn);
}

nn_sched *nn_sched_linear(nn_optim *opt, double start_factor, double end_factor,
                          int64_t total_iters) {
    const char *fn = "nn_sched_linear";
    if (bad(!(start_factor > 0 && start_factor <= 1), fn, "start_factor", start_factor) ||
        bad(!(end_factor >= 0 && end_factor <= 1), fn, "end_factor", end_factor) ||
        bad(total_iters < 1, fn, "total_iters", (double)total_iters))
        return NULL;
    nn_sched *s = sched_new(opt, K_LINEAR, fn);
    if (s) {
        s->f0 = start_factor;
        s->f1 = end_factor;
        s->i0 = total_iters;
    }
    return sched_start(s, fn);
}

nn_sched *nn_sched_one_cycle(nn_optim *opt, double max_lr, int64_t total_steps, double pct_start,
                             nn_anneal anneal, double div_factor, double final_div_factor) {
    const char *fn = "nn_sched_one_cycle";
    if (bad(!(max_lr > 0) || isinf(max_lr), fn, "max_lr", max_lr) ||
        bad(total_steps < 1, fn, "total_steps", (double)total_steps) ||
        bad(!(pct_start >= 0 && pct_start <= 1), fn, "pct_start", pct_start) ||
        bad(anneal != NN_ANNEAL_COS && anneal != NN_ANNEAL_LINEAR, fn, "anneal", (double)anneal) ||
        bad(!(div_factor > 0) || isinf(div_factor), fn, "div_factor", div_factor) ||
        bad(!(final_div_factor > 0) || isinf(final_div_factor), fn, "final_div_factor",
            final_div_factor))
        return NULL;
    nn_sched *s = sched_new(opt, K_ONECYCLE, fn);
    if (!s) return NULL;
    s->f0 = max_lr;
    s->f1 = pct_start;
    s->f2 = div_factor;
    s->f3 = final_div_factor;
    s->i0 = total_steps;
    s->i1 = anneal;
    for (int g = 0; g < s->ngroups; g++) { /* like PyTorch, start every group at max_lr / div */
        s->base_lrs[g] = max_lr / div_factor;
        if (nn_optim_set_group(opt, g, NN_OPTIM_LR, s->base_lrs[g]) != NN_OK) {
            nn_sched_free(s);
            return NULL;
        }
    }
    return sched_start(s, fn);
}

nn_sched *nn_sched_plateau(nn_optim *opt, nn_sched_mode mode, double factor, int64_t patience,
                           double threshold, int64_t cooldown, double min_lr) {
    const char *fn = "nn_sched_plateau";
    if (bad(mode != NN_SCHED_MODE_MIN && mode != NN_SCHED_MODE_MAX, fn, "mode", (double)mode) ||
        bad(!(factor >= 0 && factor < 1), fn, "factor", factor) ||
        bad(patience < 0, fn, "patience", (double)patience) ||
        bad(!(threshold >= 0) || isinf(threshold), fn, "threshold", threshold) ||
        bad(cooldown < 0, fn, "cooldown", (double)cooldown) ||
        bad(!(min_lr >= 0) || isinf(min_lr), fn, "min_lr", min_lr))
        return NULL;
    nn_sched *s = sched_new(opt, K_PLATEAU, fn);
    if (!s) return NULL;
    s->i0 = mode;
    s->f0 = factor;
    s->i1 = patience;
    s->f1 = threshold;
    s->i2 = cooldown;
    s->f2 = min_lr;
    s->best = mode == NN_SCHED_MODE_MIN ? INFINITY : -INFINITY;
    s->last_epoch = 0;
    return s;
}

static bool sched_check(const nn_sched *s, const char *fn) {
    return nn__handle_check(s, NN__KIND_SCHED, fn, "s");
}

nn_status nn_sched_cycle_momentum(nn_sched *s, double base_momentum, double max_momentum) {
    const char *fn = "nn_sched_cycle_momentum";
    if (!sched_check(s, fn)) return nn_last_status();
    if (s->kind != K_ONECYCLE)
        return nn__err(NN_ERR_STATE, "%s: only one-cycle schedules cycle momentum", fn);
    if (!(base_momentum >= 0 && base_momentum <= max_momentum && max_momentum < 1))
        return nn__err(NN_ERR_INVALID,
                       "%s: base_momentum = %g, max_momentum = %g, expected 0 <= base <= max < 1",
                       fn, base_momentum, max_momentum);
    nn_optim_type t = nn_optim_get_type(s->opt);
    if (t == NN_OPTIM_TYPE_ADAGRAD)
        return nn__err(NN_ERR_INVALID, "%s: the optimizer has neither momentum nor beta1", fn);
    s->mom_option =
        (t == NN_OPTIM_TYPE_ADAM || t == NN_OPTIM_TYPE_ADAMW) ? NN_OPTIM_BETA1 : NN_OPTIM_MOMENTUM;
    s->mom_base = base_momentum;
    s->mom_max = max_momentum;
    s->cycle_momentum = true;
    nn_status st = one_cycle_set_momentum(s);
    if (st) s->cycle_momentum = false;
    return st;
}

void nn_sched_free(nn_sched *s) {
    if (!s || !sched_check(s, "nn_sched_free")) return;
    nn__handle_clear(&s->handle);
    nn_optim_free(s->opt);
    nn__free(s->base_lrs);
    nn__free(s->milestones);
    nn__free(s);
}

/* ------------------------------------------------------- stepping */

nn_status nn_sched_step(nn_sched *s) {
    const char *fn = "nn_sched_step";
    if (!sched_check(s, fn)) return nn_last_status();
    if (s->kind == K_PLATEAU)
        return nn__err(NN_ERR_STATE,
                       "%s: a plateau schedule needs a metric: use nn_sched_step_metric", fn);
    return advance(s, fn);
}

static bool plateau_better(const nn_sched *s, double a) {
    if (s->i0 == NN_SCHED_MODE_MIN) return a < s->best * (1.0 - s->f1);
    return a > s->best * (s->f1 + 1.0);
}

nn_status nn_sched_step_metric(nn_sched *s, double metric) {
    const char *fn = "nn_sched_step_metric";
    if (!sched_check(s, fn)) return nn_last_status();
    if (s->kind != K_PLATEAU)
        return nn__err(NN_ERR_STATE, "%s: only plateau schedules take a metric: use nn_sched_step",
                       fn);
    if (isnan(metric)) return nn__err(NN_ERR_INVALID, "%s: metric is NaN", fn);
    s->last_epoch++;
    if (plateau_better(s, metric)) {
        s->best = metric;
        s->num_bad_epochs = 0;
    } else {
        s->num_bad_epochs++;
    }
    if (s->cooldown_counter > 0) { /* in cooldown: bad epochs do not count */
        s->cooldown_counter--;
        s->num_bad_epochs = 0;
    }
    if (s->num_bad_epochs > s->i1) {
        for (int g = 0; g < s->ngroups; g++) {
            double old = group_lr(s, g), nlr = fmax(old * s->f0, s->f2);
            if (old - nlr > 1e-8) {
                nn_status st = nn_optim_set_group(s->opt, g, NN_OPTIM_LR, nlr);
                if (st) return st;
            }
        }
        s->cooldown_counter = s->i2;
        s->num_bad_epochs = 0;
    }
    return NN_OK;
}

double nn_sched_get_lr(const nn_sched *s, int group) {
    const char *fn = "nn_sched_get_lr";
    if (!sched_check(s, fn)) return NAN;
    if (group < 0 || group >= s->ngroups)
        return nn__err(NN_ERR_RANGE, "%s: group %d out of range [0, %d)", fn, group, s->ngroups),
               NAN;
    return group_lr(s, group);
}

int64_t nn_sched_last_epoch(const nn_sched *s) {
    return sched_check(s, "nn_sched_last_epoch") ? s->last_epoch : -1;
}

/* ------------------------------------------------------ state dicts */

nn_statedict *nn_sched_state_dict(const nn_sched *s) {
    const char *fn = "nn_sched_state_dict";
    if (!sched_check(s, fn)) return NULL;
    nn_statedict *sd = nn_statedict_new();
    if (!sd) return NULL;
    nn_status st = nn__sd_put_i64(sd, "kind", s->kind);
    if (!st) st = nn__sd_put_i64(sd, "last_epoch", s->last_epoch);
    if (!st) st = nn__sd_put_double(sd, "t_cur", s->t_cur);
    if (!st) st = nn__sd_put_double(sd, "t_i", s->t_i);
    if (!st) st = nn__sd_put_double(sd, "best", s->best);
    if (!st) st = nn__sd_put_i64(sd, "num_bad_epochs", s->num_bad_epochs);
    if (!st) st = nn__sd_put_i64(sd, "cooldown_counter", s->cooldown_counter);
    for (int g = 0; g < s->ngroups && !st; g++) {
        char name[48];
        snprintf(name, sizeof name, "base_lr.%d", g);
        st = nn__sd_put_double(sd, name, s->base_lrs[g]);
    }
    if (st) {
        nn_statedict_free(sd);
        if (!nn__err_pending()) nn__err(st, "%s: could not build the state dict", fn);
        return NULL;
    }
    return sd;
}

nn_status nn_sched_load_state_dict(nn_sched *s, const nn_statedict *sd) {
    const char *fn = "nn_sched_load_state_dict";
    if (!sched_check(s, fn)) return nn_last_status();
    if (!nn__handle_check(sd, NN__KIND_STATEDICT, fn, "sd")) return nn_last_status();
    nn_sched t = *s; /* staged copy: commit only if every entry is valid */
    int64_t kind;
    nn_status st = nn__sd_get_i64(sd, "kind", &kind, fn);
    if (!st && kind != (int64_t)s->kind)
        return nn__err(NN_ERR_INVALID, "%s: state is of schedule kind %lld, this schedule is %d",
                       fn, (long long)kind, (int)s->kind);
    if (!st) st = nn__sd_get_i64(sd, "last_epoch", &t.last_epoch, fn);
    if (!st) st = nn__sd_get_double(sd, "t_cur", &t.t_cur, fn);
    if (!st) st = nn__sd_get_double(sd, "t_i", &t.t_i, fn);
    if (!st) st = nn__sd_get_double(sd, "best", &t.best, fn);
    if (!st) st = nn__sd_get_i64(sd, "num_bad_epochs", &t.num_bad_epochs, fn);
    if (!st) st = nn__sd_get_i64(sd, "cooldown_counter", &t.cooldown_counter, fn);
    if (!st && (t.last_epoch < -1 || t.num_bad_epochs < 0 || t.cooldown_counter < 0))
        st = nn__err(NN_ERR_FORMAT, "%s: negative counters in the state", fn);
    double *base = st ? NULL : nn__calloc((size_t)s->ngroups, sizeof *base);
    if (!st && !base) st = NN_ERR_NOMEM;
    for (int g = 0; g < s->ngroups && !st; g++) {
        char name[48];
        snprintf(name, sizeof name, "base_lr.%d", g);
        st = nn__sd_get_double(sd, name, &base[g], fn);
    }
    if (st) {
        nn__free(base);
        return st;
    }
    memcpy(s->base_lrs, base, (size_t)s->ngroups * sizeof *base);
    nn__free(base);
    s->last_epoch = t.last_epoch;
    s->t_cur = t.t_cur;
    s->t_i = t.t_i;
    s->best = t.best;
    s->num_bad_epochs = t.num_bad_epochs;
    s->cooldown_counter = t.cooldown_counter;
    return NN_OK;
}
