/* Recurrent layers: Elman RNN, LSTM, GRU (stacked, bidirectional, inter-layer
 * dropout, batch_first or not), built from public ops inside the caller's
 * compose scope, so autograd comes free.
 * Gate order and parameter names follow PyTorch:
 *   LSTM: i, f, g, o      c' = f*c + i*g,  h' = o*tanh(c')
 *   GRU:  r, z, n         n = tanh(x_n + r*(W_hn h + b_hn)),  h' = n + z*(h - n) */
#include "module_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Keys: RNN has "nonlinearity" after "bias"; LSTM and GRU do not. The
 * three options after it default to what files written before they existed
 * meant (batch_first, no dropout, one direction). */
enum { R_IN, R_HID, R_LAYERS, R_BIAS };
enum { OPT_BATCH_FIRST, OPT_DROPOUT, OPT_BIDIR };
static const char *const rnn_keys[] = {"input_size",  "hidden_size", "num_layers",
                                       "bias",        "nonlinearity", "batch_first",
                                       "dropout",     "bidirectional"};
static const double rnn_defaults[] = {NAN, NAN, 1, 1, 0, 1, 0, 0};
static const char *const gated_keys[] = {"input_size",  "hidden_size", "num_layers", "bias",
                                         "batch_first", "dropout",     "bidirectional"};
static const double gated_defaults[] = {NAN, NAN, 1, 1, 1, 0, 0};

static int64_t ci(const nn_module *m, int k) { return (int64_t)m->cfg[k]; }

static bool is_elman(const nn_module *m) { return m->kind == &nn__kind_rnn; }

/* Slot of option o (OPT_*) in m->cfg. */
static int opt(const nn_module *m, int o) { return (is_elman(m) ? 5 : 4) + o; }

static bool batch_first(const nn_module *m) { return m->cfg[opt(m, OPT_BATCH_FIRST)] != 0; }
static int dirs(const nn_module *m) { return m->cfg[opt(m, OPT_BIDIR)] != 0 ? 2 : 1; }
static bool relu(const nn_module *m) { return is_elman(m) && m->cfg[4] != 0; }

static int gates_of(const nn_module *m) {
    return m->kind == &nn__kind_lstm ? 4 : m->kind == &nn__kind_gru ? 3 : 1;
}

static nn_status rnn_check_cfg(nn_module *m) {
    for (int k = 0; k < m->kind->nkeys; k++) {
        double v = m->cfg[k], lo = k < R_LAYERS ? 1 : 0, hi = 1;
        if (k < R_LAYERS) hi = (double)(1LL << 31);
        if (k == R_LAYERS) lo = 1, hi = 1024;
        if (k == opt(m, OPT_DROPOUT)) {
            if (v >= 0 && v <= 1) continue;
            return nn__err(NN_ERR_INVALID, "%s: dropout = %g, expected a value in [0, 1]",
                           m->kind->type, v);
        }
        if (v != floor(v) || v < lo || v > hi)
            return nn__err(NN_ERR_INVALID, "%s: %s = %g, expected an integer in %.0f..%.0f",
                           m->kind->type, m->kind->keys[k], v, lo, hi);
    }
    return NN_OK;
}

/* Parameters in PyTorch's order: per layer, per direction, weight_ih,
 * weight_hh, bias_ih, bias_hh (suffix "_reverse" for the backward one). */
static nn_status rnn_build(nn_module *m) {
    nn_status st = rnn_check_cfg(m);
    if (st != NN_OK) return st;
    int64_t hid = ci(m, R_HID), gh = gates_of(m) * hid;
    double bound = 1.0 / sqrt((double)hid);
    for (int l = 0; l < ci(m, R_LAYERS) && st == NN_OK; l++) {
        int64_t in_l = l == 0 ? ci(m, R_IN) : hid * dirs(m);
        int64_t wih[2] = {gh, in_l}, whh[2] = {gh, hid};
        const int64_t *shapes[4] = {wih, whh, &gh, &gh};
        static const char *const names[4] = {"weight_ih_l%d%s", "weight_hh_l%d%s",
                                             "bias_ih_l%d%s", "bias_hh_l%d%s"};
        int np = ci(m, R_BIAS) ? 4 : 2;
        for (int d = 0; d < dirs(m); d++)
            for (int j = 0; j < np && st == NN_OK; j++) {
                char name[40];
                snprintf(name, sizeof name, names[j], l, d ? "_reverse" : "");
                nn_tensor *t = nn__mod_uniform_param(shapes[j], j < 2 ? 2 : 1, bound);
                if (!t) return nn_last_status();
                st = nn__mod_add_param(m, name, t);
                if (st != NN_OK) nn__tensor_release(t);
            }
    }
    /* Inter-layer dropout draws from the module's own generator (seeded from
     * the default one, like Dropout); none is made without dropout, so
     * seeding before building gives the weights it always gave. */
    if (st == NN_OK && m->cfg[opt(m, OPT_DROPOUT)] > 0 && ci(m, R_LAYERS) > 1) {
        m->gen = nn_generator_new(nn__gen_next(nn__gen(NULL)));
        if (!m->gen) st = nn_last_status();
    }
    return st;
}

/* Parameter j (0 w_ih, 1 w_hh, 2 b_ih, 3 b_hh) of layer l, direction d, or NULL. */
static nn_tensor *rparam(const nn_module *m, int l, int d, int j) {
    int np = ci(m, R_BIAS) ? 4 : 2;
    if (j >= np) return NULL;
    return m->params.e[(l * dirs(m) + d) * np + j].t;
}

/* Columns [k*H, (k+1)*H) of a [N, G*H] tensor. */
static nn_tensor *gate(nn_tensor *g, int k, int64_t h) {
    return nn_slice(g, 1, k * h, (k + 1) * h, 1);
}

/* One time step of layer l, direction d: returns the new h; *c is replaced
 * for LSTM. All results belong to the open scope. */
static nn_tensor *cell(const nn_module *m, int l, int d, nn_tensor *xt, nn_tensor *h,
                       nn_tensor **c) {
    int64_t hd = ci(m, R_HID);
    nn_tensor *hp = nn_linear(h, rparam(m, l, d, 1), rparam(m, l, d, 3)); /* [N, G*H] */
    if (m->kind == &nn__kind_rnn) {
        nn_tensor *a = nn_add(xt, hp);
        return relu(m) ? nn_relu(a) : nn_tanh(a);
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

/* States are [num_layers * num_directions, N, H] whatever batch_first. */
static bool check_state(const nn_module *m, const nn_tensor *s, int64_t n, const char *what) {
    if (!s) return true;
    if (!nn__check_f32(s, m->kind->type, what)) return false;
    int64_t want[3] = {ci(m, R_LAYERS) * dirs(m), n, ci(m, R_HID)};
    if (s->ndim == 3 && s->shape[0] == want[0] && s->shape[1] == want[1] && s->shape[2] == want[2])
        return true;
    char a[128], b[128];
    nn__err(NN_ERR_SHAPE, "%s: expected %s of shape %s, got %s", m->kind->type, what,
            nn__shape_str(want, 3, a, sizeof a), nn__shape_str(s->shape, s->ndim, b, sizeof b));
    return false;
}

/* Initial state k (= layer * dirs + direction) from s (or zeros). */
static nn_tensor *init_state(const nn_module *m, nn_tensor *s, int k, int64_t n) {
    if (s) return nn_squeeze(nn_slice(s, 0, k, k + 1, 1), 0);
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

/* One direction of one layer over inp [N, T, In] -> [N, T, H]; the final
 * states go to hs[k], cs[k]. outs: scratch for T pointers. */
static nn_tensor *run_direction(const nn_module *m, nn_tensor *inp, int l, int d, nn_tensor *h0,
                                nn_tensor *c0, nn_tensor **outs, nn_tensor **hs, nn_tensor **cs) {
    int64_t n = inp->shape[0], steps = inp->shape[1];
    int k = l * dirs(m) + d;
    nn_tensor *xp = nn_linear(inp, rparam(m, l, d, 0), rparam(m, l, d, 2)); /* [N, T, G*H] */
    nn_tensor *h = init_state(m, h0, k, n);
    nn_tensor *c = m->kind == &nn__kind_lstm ? init_state(m, c0, k, n) : NULL;
    for (int64_t s = 0; s < steps; s++) {
        int64_t t = d ? steps - 1 - s : s; /* the reverse direction reads backwards */
        nn_tensor *xt = nn_squeeze(nn_slice(xp, 1, t, t + 1, 1), 1);
        h = cell(m, l, d, xt, h, &c);
        outs[t] = h;
    }
    hs[k] = h;
    cs[k] = c;
    return h ? stack_dim(outs, (int)steps, 1) : NULL;
}

/* The whole recurrence; all results belong to the open scope. */
static nn_tensor *rnn_run(const nn_module *m, nn_tensor *x, nn_tensor *h0, nn_tensor *c0,
                          nn_tensor **h_n, nn_tensor **c_n) {
    const char *tn = m->kind->type;
    bool bf = batch_first(m);
    if (x->dtype != NN_DTYPE_F32)
        return NN__FAIL(NN_ERR_DTYPE, "%s: expected an f32 input, got %s", tn,
                        nn_dtype_name(x->dtype));
    if (x->ndim != 3 || x->shape[2] != ci(m, R_IN) || x->shape[bf ? 1 : 0] < 1) {
        char s[128];
        return NN__FAIL(NN_ERR_SHAPE, "%s: expected input %s%lld] (%sT >= 1), got %s", tn,
                        bf ? "[N,T," : "[T,N,", (long long)ci(m, R_IN), bf ? "batch_first, " : "",
                        nn__shape_str(x->shape, x->ndim, s, sizeof s));
    }
    nn_tensor *inp = bf ? x : nn_transpose(x, 0, 1); /* [N, T, In] */
    if (!inp) return NULL;
    int64_t n = inp->shape[0], steps = inp->shape[1];
    if (!check_state(m, h0, n, "h0") || !check_state(m, c0, n, "c0")) return NULL;
    if (c0 && m->kind != &nn__kind_lstm)
        return NN__FAIL(NN_ERR_INVALID, "%s: c0 is for LSTM only", tn);
    int layers = (int)ci(m, R_LAYERS), nd = dirs(m);
    double p = m->cfg[opt(m, OPT_DROPOUT)];
    bool drop = p > 0 && nn__mod_training(m) && m->gen;
    size_t bytes;
    if (!nn__size_mul((size_t)steps, sizeof(nn_tensor *), &bytes))
        return NN__FAIL(NN_ERR_OVERFLOW, "%s: too many time steps", tn);
    nn_tensor **outs = nn__malloc(bytes);
    nn_tensor *hs[2048], *cs[2048]; /* num_layers <= 1024, two directions */
    if (!outs) return NULL;
    for (int l = 0; l < layers && inp; l++) {
        if (l > 0 && drop) inp = nn_dropout(inp, p, true, m->gen); /* PyTorch: between layers */
        nn_tensor *dir_out[2] = {NULL, NULL};
        for (int d = 0; d < nd && inp; d++)
            dir_out[d] = run_direction(m, inp, l, d, h0, c0, outs, hs, cs);
        inp = nd == 2 ? (dir_out[0] && dir_out[1] ? nn_concat(dir_out, 2, 2) : NULL)
                      : dir_out[0]; /* [N, T, D*H] */
    }
    nn__free(outs);
    if (!inp) return NULL;
    if (h_n && !(*h_n = stack_dim(hs, layers * nd, 0))) return NULL;
    if (c_n && !(*c_n = stack_dim(cs, layers * nd, 0))) return NULL;
    return bf ? inp : nn_transpose(inp, 0, 1);
}

static nn_tensor *rnn_forward(nn_module *m, nn_tensor *x) {
    return rnn_run(m, x, NULL, NULL, NULL, NULL);
}

static double rnn_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)out;
    if (!in || in->ndim != 3) return 0;
    double nt = (double)(in->shape[0] * in->shape[1]), hid = (double)ci(m, R_HID), f = 0;
    for (int l = 0; l < ci(m, R_LAYERS); l++) {
        double in_l = l == 0 ? (double)ci(m, R_IN) : hid * dirs(m);
        f += dirs(m) * nt * gates_of(m) * hid * (2.0 * (in_l + hid) + 4.0);
    }
    return f;
}

const nn__mod_kind nn__kind_rnn = {.type = "RNN",
                                   .nkeys = 8,
                                   .keys = rnn_keys,
                                   .defaults = rnn_defaults,
                                   .build = rnn_build,
                                   .forward = rnn_forward,
                                   .flops = rnn_flops};
const nn__mod_kind nn__kind_lstm = {.type = "LSTM",
                                    .nkeys = 7,
                                    .keys = gated_keys,
                                    .defaults = gated_defaults,
                                    .build = rnn_build,
                                    .forward = rnn_forward,
                                    .flops = rnn_flops};
const nn__mod_kind nn__kind_gru = {.type = "GRU",
                                   .nkeys = 7,
                                   .keys = gated_keys,
                                   .defaults = gated_defaults,
                                   .build = rnn_build,
                                   .forward = rnn_forward,
                                   .flops = rnn_flops};

nn_module *nn_recurrent_new(nn_rnn_mode mode, int64_t input_size, int64_t hidden_size,
                            int num_layers, bool bias, bool batch_first, double dropout,
                            bool bidirectional) {
    double v[8] = {(double)input_size, (double)hidden_size, num_layers, bias};
    int o = 4;
    const nn__mod_kind *kind = &nn__kind_rnn;
    switch (mode) {
    case NN_RNN_MODE_RNN_TANH:
    case NN_RNN_MODE_RNN_RELU: v[o++] = mode == NN_RNN_MODE_RNN_RELU; break;
    case NN_RNN_MODE_LSTM: kind = &nn__kind_lstm; break;
    case NN_RNN_MODE_GRU: kind = &nn__kind_gru; break;
    default:
        return NN__FAIL(NN_ERR_INVALID,
                        "nn_recurrent_new: mode = %d, expected RNN_TANH (0), RNN_RELU (1), "
                        "LSTM (2) or GRU (3)",
                        (int)mode);
    }
    v[o + OPT_BATCH_FIRST] = batch_first;
    v[o + OPT_DROPOUT] = dropout;
    v[o + OPT_BIDIR] = bidirectional;
    return nn__mod_new_kind(kind, v);
}

nn_module *nn_rnn_new(int64_t input_size, int64_t hidden_size, int num_layers,
                      nn_rnn_nonlinearity nonlinearity, bool bias) {
    if (nonlinearity != NN_RNN_NONLINEARITY_TANH && nonlinearity != NN_RNN_NONLINEARITY_RELU)
        return NN__FAIL(NN_ERR_INVALID,
                        "nn_rnn_new: nonlinearity = %d, expected TANH (0) or RELU (1)",
                        (int)nonlinearity);
    return nn_recurrent_new(nonlinearity == NN_RNN_NONLINEARITY_RELU ? NN_RNN_MODE_RNN_RELU
                                                                     : NN_RNN_MODE_RNN_TANH,
                            input_size, hidden_size, num_layers, bias, true, 0, false);
}

nn_module *nn_lstm_new(int64_t input_size, int64_t hidden_size, int num_layers, bool bias) {
    return nn_recurrent_new(NN_RNN_MODE_LSTM, input_size, hidden_size, num_layers, bias, true, 0,
                            false);
}

nn_module *nn_gru_new(int64_t input_size, int64_t hidden_size, int num_layers, bool bias) {
    return nn_recurrent_new(NN_RNN_MODE_GRU, input_size, hidden_size, num_layers, bias, true, 0,
                            false);
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
