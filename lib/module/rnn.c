/* Recurrent layers: Elman RNN, LSTM, GRU (batch_first, multi-layer), built
 * from public ops inside the caller's compose scope, so autograd comes free.
 * Gate order and parameter names follow PyTorch:
 *   LSTM: i, f, g, o      c' = f*c + i*g,  h' = o*tanh(c')
 *   GRU:  r, z, n         n = tanh(x_n + r*(W_hn h + b_hn)),  h' = n + z*(h - n) */
#include "module_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { R_IN, R_HID, R_LAYERS, R_BIAS, R_NONLIN };
static const char *const rnn_keys[] = {"input_size", "hidden_size", "num_layers", "bias",
                                       "nonlinearity"};
static const double rnn_defaults[] = {NAN, NAN, 1, 1, 0};

static int64_t ci(const nn_module *m, int k) { return (int64_t)m->cfg[k]; }

static int gates_of(const nn_module *m) {
    return m->kind == &nn__kind_lstm ? 4 : m->kind == &nn__kind_gru ? 3 : 1;
}

static nn_status rnn_check_cfg(nn_module *m) {
    static const double hi[] = {1LL << 31, 1LL << 31, 1024, 1, 1};
    static const double lo[] = {1, 1, 1, 0, 0};
    for (int k = 0; k < m->kind->nkeys; k++) {
        double v = m->cfg[k];
        if (v != floor(v) || v < lo[k] || v > hi[k])
            return nn__err(NN_ERR_INVALID, "%s: %s = %g, expected an integer in %.0f..%.0f",
                           m->kind->type, m->kind->keys[k], v, lo[k], hi[k]);
    }
    return NN_OK;
}

static nn_status rnn_build(nn_module *m) {
    nn_status st = rnn_check_cfg(m);
    if (st != NN_OK) return st;
    int64_t hid = ci(m, R_HID), gh = gates_of(m) * hid;
    double bound = 1.0 / sqrt((double)hid);
    for (int l = 0; l < ci(m, R_LAYERS) && st == NN_OK; l++) {
        int64_t in_l = l == 0 ? ci(m, R_IN) : hid;
        int64_t wih[2] = {gh, in_l}, whh[2] = {gh, hid};
        const int64_t *shapes[4] = {wih, whh, &gh, &gh};
        static const char *const names[4] = {"weight_ih_l%d", "weight_hh_l%d", "bias_ih_l%d",
                                             "bias_hh_l%d"};
        int np = ci(m, R_BIAS) ? 4 : 2;
        for (int j = 0; j < np && st == NN_OK; j++) {
            char name[32];
            snprintf(name, sizeof name, names[j], l);
            nn_tensor *t = nn__mod_uniform_param(shapes[j], j < 2 ? 2 : 1, bound);
            if (!t) return nn_last_status();
            st = nn__mod_add_param(m, name, t);
            if (st != NN_OK) nn__tensor_release(t);
        }
    }
    return st;
}

/* Parameter j (0 w_ih, 1 w_hh, 2 b_ih, 3 b_hh) of layer l, or NULL. */
static nn_tensor *rparam(const nn_module *m, int l, int j) {
    int np = ci(m, R_BIAS) ? 4 : 2;
    if (j >= np) return NULL;
    return m->params[l * np + j].t;
}

/* Columns [k*H, (k+1)*H) of a [N, G*H] tensor. */
static nn_tensor *gate(nn_tensor *g, int k, int64_t h) {
    return nn_slice(g, 1, k * h, (k + 1) * h, 1);
}

/* One time step: returns the new h; *c is replaced for LSTM. All results
 * belong to the open scope. */
static nn_tensor *cell(const nn_module *m, int l, nn_tensor *xt, nn_tensor *h, nn_tensor **c) {
    int64_t hd = ci(m, R_HID);
    nn_tensor *hp = nn_linear(h, rparam(m, l, 1), rparam(m, l, 3)); /* [N, G*H] */
    if (m->kind == &nn__kind_rnn) {
        nn_tensor *a = nn_add(xt, hp);
        return ci(m, R_NONLIN) ? nn_relu(a) : nn_tanh(a);
    }
    if (m->kind == &nn__kind_lstm) {
        nn_tensor *g = nn_add(xt, hp);
        nn_tensor *i = nn_sigmoid(gate(g, 0, hd)), *f = nn_sigmoid(gate(g, 1, hd));
        nn_tensor *gg = nn_tanh(gate(g, 2, hd)), *o = nn_sigmoid(gate(g, 3, hd));
        *c = nn_add(nn_mul(f, *c), nn_mul(i, gg));
        return nn_mul(o, nn_tanh(*c));
    }
    nn_tensor *r = nn_sigmoid(nn_add(gate(xt, 0, hd), gate(hp, 0, hd)));
    nn_tensor *z = nn_sigmoid(nn_add(gate(xt, 1, hd), gate(hp, 1, hd)));
    nn_tensor *n = nn_tanh(nn_add(gate(xt, 2, hd), nn_mul(r, gate(hp, 2, hd))));
    return nn_add(n, nn_mul(z, nn_sub(h, n)));
}

static bool check_state(const nn_module *m, const nn_tensor *s, int64_t n, const char *what) {
    if (!s) return true;
    if (!nn__check_f32(s, m->kind->type, what)) return false;
    int64_t want[3] = {ci(m, R_LAYERS), n, ci(m, R_HID)};
    if (s->ndim == 3 && s->shape[0] == want[0] && s->shape[1] == want[1] && s->shape[2] == want[2])
        return true;
    char a[128], b[128];
    nn__err(NN_ERR_SHAPE, "%s: expected %s of shape %s, got %s", m->kind->type, what,
            nn__shape_str(want, 3, a, sizeof a),
            nn__shape_str(s->shape, s->ndim, b, sizeof b));
    return false;
}

/* Layer l's initial state from s [L, N, H] (or zeros). */
static nn_tensor *init_state(const nn_module *m, nn_tensor *s, int l, int64_t n) {
    if (s) return nn_squeeze(nn_slice(s, 0, l, l + 1, 1), 0);
    int64_t shape[2] = {n, ci(m, R_HID)};
    return nn_tensor_zeros(NN_DTYPE_F32, shape, 2);
}

/* torch.stack via unsqueeze + concat (results owned by the open scope). */
static nn_tensor *stack_dim(nn_tensor **ts, int n, int dim) {
    for (int i = 0; i < n; i++) {
        ts[i] = nn_unsqueeze(ts[i], dim);
        if (!ts[i]) return NULL;
    }
    return nn_concat(ts, n, dim);
}

/* The whole recurrence; all results belong to the open scope. */
static nn_tensor *rnn_run(const nn_module *m, nn_tensor *x, nn_tensor *h0, nn_tensor *c0,
                          nn_tensor **h_n, nn_tensor **c_n) {
    const char *tn = m->kind->type;
    if (x->dtype != NN_DTYPE_F32)
        return NN__FAIL(NN_ERR_DTYPE, "%s: expected an f32 input, got %s", tn,
                        nn_dtype_name(x->dtype));
    if (x->ndim != 3 || x->shape[2] != ci(m, R_IN) || x->shape[1] < 1) {
        char s[128];
        return NN__FAIL(NN_ERR_SHAPE,
                        "%s: expected input [N,T,%lld] (batch_first, T >= 1), got %s", tn,
                        (long long)ci(m, R_IN), nn__shape_str(x->shape, x->ndim, s, sizeof s));
    }
    int64_t n = x->shape[0], steps = x->shape[1];
    if (!check_state(m, h0, n, "h0") || !check_state(m, c0, n, "c0")) return NULL;
    if (c0 && m->kind != &nn__kind_lstm)
        return NN__FAIL(NN_ERR_INVALID, "%s: c0 is for LSTM only", tn);
    int layers = (int)ci(m, R_LAYERS);
    size_t bytes;
    if (!nn__size_mul((size_t)steps, sizeof(nn_tensor *), &bytes))
        return NN__FAIL(NN_ERR_OVERFLOW, "%s: too many time steps", tn);
    nn_tensor **outs = nn__malloc(bytes);
    nn_tensor *hs[1024], *cs[1024];
    if (!outs) return NULL;
    nn_tensor *inp = x;
    for (int l = 0; l < layers && inp; l++) {
        nn_tensor *xp = nn_linear(inp, rparam(m, l, 0), rparam(m, l, 2)); /* [N, T, G*H] */
        nn_tensor *h = init_state(m, h0, l, n);
        nn_tensor *c = m->kind == &nn__kind_lstm ? init_state(m, c0, l, n) : NULL;
        for (int64_t t = 0; t < steps; t++) {
            nn_tensor *xt = nn_squeeze(nn_slice(xp, 1, t, t + 1, 1), 1);
            h = cell(m, l, xt, h, &c);
            outs[t] = h;
        }
        inp = h ? stack_dim(outs, (int)steps, 1) : NULL; /* [N, T, H] */
        hs[l] = h;
        cs[l] = c;
    }
    nn__free(outs);
    if (!inp) return NULL;
    if (h_n && !(*h_n = stack_dim(hs, layers, 0))) return NULL;
    if (c_n && !(*c_n = stack_dim(cs, layers, 0))) return NULL;
    return inp;
}

static nn_tensor *rnn_forward(nn_module *m, nn_tensor *x) {
    return rnn_run(m, x, NULL, NULL, NULL, NULL);
}

static double rnn_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)out;
    if (!in || in->ndim != 3) return 0;
    double nt = (double)(in->shape[0] * in->shape[1]), hid = (double)ci(m, R_HID), f = 0;
    for (int l = 0; l < ci(m, R_LAYERS); l++) {
        double in_l = l == 0 ? (double)ci(m, R_IN) : hid;
        f += nt * gates_of(m) * hid * (2.0 * (in_l + hid) + 4.0);
    }
    return f;
}

const nn__mod_kind nn__kind_rnn = {.type = "RNN",
                                   .nkeys = 5,
                                   .keys = rnn_keys,
                                   .defaults = rnn_defaults,
                                   .build = rnn_build,
                                   .forward = rnn_forward,
                                   .flops = rnn_flops};
const nn__mod_kind nn__kind_lstm = {.type = "LSTM",
                                    .nkeys = 4,
                                    .keys = rnn_keys,
                                    .defaults = rnn_defaults,
                                    .build = rnn_build,
                                    .forward = rnn_forward,
                                    .flops = rnn_flops};
const nn__mod_kind nn__kind_gru = {.type = "GRU",
                                   .nkeys = 4,
                                   .keys = rnn_keys,
                                   .defaults = rnn_defaults,
                                   .build = rnn_build,
                                   .forward = rnn_forward,
                                   .flops = rnn_flops};

nn_module *nn_rnn_new(int64_t input_size, int64_t hidden_size, int num_layers,
                      nn_rnn_nonlinearity nonlinearity, bool bias) {
    if (nonlinearity != NN_RNN_NONLINEARITY_TANH && nonlinearity != NN_RNN_NONLINEARITY_RELU)
        return NN__FAIL(NN_ERR_INVALID,
                        "nn_rnn_new: nonlinearity = %d, expected TANH (0) or RELU (1)",
                        (int)nonlinearity);
    double v[] = {(double)input_size, (double)hidden_size, num_layers, bias, nonlinearity};
    return nn__mod_new_kind(&nn__kind_rnn, v);
}

nn_module *nn_lstm_new(int64_t input_size, int64_t hidden_size, int num_layers, bool bias) {
    double v[] = {(double)input_size, (double)hidden_size, num_layers, bias};
    return nn__mod_new_kind(&nn__kind_lstm, v);
}

nn_module *nn_gru_new(int64_t input_size, int64_t hidden_size, int num_layers, bool bias) {
    double v[] = {(double)input_size, (double)hidden_size, num_layers, bias};
    return nn__mod_new_kind(&nn__kind_gru, v);
}

/* Take a scope-owned tensor out of a compose scope: an extra reference
 * survives nn_scope_end. */
static void keep(nn_tensor *t) {
    if (t) nn__tensor_retain(t);
}

nn_tensor *nn_recurrent_forward(nn_module *m, nn_tensor *x, nn_tensor *h0, nn_tensor *c0,
                                nn_tensor **h_n, nn_tensor **c_n) {
    const char *fn = "nn_recurrent_forward";
    if (h_n) *h_n = NULL;
    if (c_n) *c_n = NULL;
    if (!nn__mod_check(m, fn, "m") || !nn__check_tensor(x, fn, "x")) return NULL;
    if (m->kind != &nn__kind_rnn && m->kind != &nn__kind_lstm && m->kind != &nn__kind_gru)
        return NN__FAIL(NN_ERR_INVALID, "%s: module is a %s, not an RNN, LSTM or GRU", fn,
                        nn_module_type_name(m));
    if (c_n && m->kind != &nn__kind_lstm)
        return NN__FAIL(NN_ERR_INVALID, "%s: c_n is for LSTM only", fn);
    nn_scope *s = nn__compose_begin();
    if (!s) return NULL;
    nn_tensor *hn = NULL, *cn = NULL;
    nn_tensor *y = rnn_run(m, x, h0, c0, h_n ? &hn : NULL, c_n ? &cn : NULL);
    if (y) {
        keep(hn);
        keep(cn);
    } else {
        hn = cn = NULL;
    }
    y = nn__compose_end(s, y);
    if (!y) return NULL;
    if (h_n) *h_n = nn__track(hn);
    if (c_n) *c_n = nn__track(cn);
    return nn__track(y);
}
