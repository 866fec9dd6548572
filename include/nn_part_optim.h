/* Section of nn.h (merged into nn.h before release). Include <nn.h>, not this. */
#ifndef NN_PART_OPTIM_H
#define NN_PART_OPTIM_H
#ifndef NN_H
#error "include <nn.h> instead"
#endif

/* ====================================================================== */
/*  Losses                                                                */
/* ====================================================================== */
/* Each loss returns a new tensor: a 0-d scalar for NN_REDUCTION_MEAN / SUM
 * (and BATCHMEAN, accepted by nn_kl_div only), or the per-element (per-sample
 * for cross-entropy / NLL) losses for NN_REDUCTION_NONE. Semantics follow
 * PyTorch 1.13. Gradients flow to `input` (and to `target` where PyTorch has
 * one: the regression losses, nn_kl_div, nn_bce_with_logits and probability
 * targets of cross-entropy); `weight` / `pos_weight` are constants. Targets
 * must have the input's shape (no broadcasting), else NN_ERR_SHAPE. */

/* Mean squared error (input - target)^2. */
NN_API nn_tensor *nn_mse_loss(nn_tensor *input, nn_tensor *target, nn_reduction reduction);
/* Mean absolute error |input - target|. */
NN_API nn_tensor *nn_l1_loss(nn_tensor *input, nn_tensor *target, nn_reduction reduction);
/* 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (beta >= 0; 0 is L1). */
NN_API nn_tensor *nn_smooth_l1_loss(nn_tensor *input, nn_tensor *target, double beta,
                                    nn_reduction reduction);
/* 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta) (delta > 0). */
NN_API nn_tensor *nn_huber_loss(nn_tensor *input, nn_tensor *target, double delta,
                                nn_reduction reduction);

/* Cross-entropy of logits [N, C] (or [C], or [N, C, d1, ...]) against i64
 * class indices [N] (or [], [N, d1, ...]); mean over the batch. One fused
 * op: log-softmax + NLL, backward softmax - onehot. */
NN_API nn_tensor *nn_cross_entropy(nn_tensor *logits, nn_tensor *target);
/* Full cross-entropy. target: i64 class indices (as above; an index equal to
 * ignore_index contributes nothing, any other index outside [0, C) is
 * NN_ERR_RANGE) or f32 class probabilities of the logits' shape. weight: f32
 * [C] class weights or NULL. label_smoothing in [0, 1]. MEAN with indices is
 * the weighted mean (divided by the summed weights of the counted targets),
 * with probabilities the mean over samples, as in PyTorch. */
NN_API nn_tensor *nn_cross_entropy_ex(nn_tensor *logits, nn_tensor *target, nn_tensor *weight,
                                      int64_t ignore_index, double label_smoothing,
                                      nn_reduction reduction);
/* Negative log-likelihood of log-probabilities [N, C, *] against i64 class
 * indices, with optional class weights [C] and ignore_index (PyTorch's
 * default is -100); MEAN is the weighted mean. */
NN_API nn_tensor *nn_nll_loss(nn_tensor *input, nn_tensor *target, nn_tensor *weight,
                              int64_t ignore_index, nn_reduction reduction);
/* Binary cross-entropy of probabilities input in [0, 1] (else
 * NN_ERR_INVALID) against targets; logs are clamped at -100 like PyTorch.
 * weight: NULL or broadcastable to input. */
NN_API nn_tensor *nn_bce_loss(nn_tensor *input, nn_tensor *target, nn_tensor *weight,
                              nn_reduction reduction);
/* Sigmoid + binary cross-entropy in one numerically stable op. weight: NULL
 * or broadcastable to input; pos_weight: NULL or broadcastable to input
 * (usually [C]), weighting the positive term. */
NN_API nn_tensor *nn_bce_with_logits(nn_tensor *input, nn_tensor *target, nn_tensor *weight,
                                     nn_tensor *pos_weight, nn_reduction reduction);
/* KL divergence with input = log-probabilities: target (log t - input), or
 * exp(target) (target - input) when log_target. BATCHMEAN divides the sum
 * by the size of dim 0 (the mathematically correct KL; MEAN divides by numel). */
NN_API nn_tensor *nn_kl_div(nn_tensor *input, nn_tensor *target, nn_reduction reduction,
                            bool log_target);

/* ====================================================================== */
/*  Optimizers                                                            */
/* ====================================================================== */
/*
 * An optimizer holds references to its parameters (f32 leaf tensors), split
 * into parameter groups, each with its own options. nn_optim_step updates
 * every parameter that has a gradient (others are skipped, like PyTorch)
 * with grad mode off; update rules are those of PyTorch 1.13's single-tensor
 * path. Usage:
 *
 *     nn_optim *opt = nn_optim_new(NN_OPTIM_TYPE_ADAM, params, n, 1e-3);
 *     nn_optim_set(opt, NN_OPTIM_WEIGHT_DECAY, 1e-4);
 *     ... nn_optim_zero_grad(opt); nn_backward(loss); nn_optim_step(opt);
 *     nn_optim_free(opt);
 *
 * An optimizer must not be used from two threads at once.
 */

/* Values are pinned. */
typedef enum nn_optim_type {
    NN_OPTIM_TYPE_SGD = 0,
    NN_OPTIM_TYPE_ADAM = 1,
    NN_OPTIM_TYPE_ADAMW = 2,
    NN_OPTIM_TYPE_RMSPROP = 3,
    NN_OPTIM_TYPE_ADAGRAD = 4
} nn_optim_type;

/* Options, PyTorch's defaults in brackets. Setting one the optimizer type
 * does not have is NN_ERR_INVALID. Values are pinned. */
typedef enum nn_optim_option {
    NN_OPTIM_LR = 0,           /* all: learning rate, >= 0 */
    NN_OPTIM_MOMENTUM = 1,     /* SGD, RMSprop: >= 0 [0] */
    NN_OPTIM_DAMPENING = 2,    /* SGD: [0] */
    NN_OPTIM_NESTEROV = 3,     /* SGD: 0 or 1 [0]; needs momentum > 0, dampening 0 */
    NN_OPTIM_WEIGHT_DECAY = 4, /* all: >= 0 [0; AdamW 0.01] (AdamW: decoupled) */
    NN_OPTIM_BETA1 = 5,        /* Adam, AdamW: in [0, 1) [0.9] */
    NN_OPTIM_BETA2 = 6,        /* Adam, AdamW: in [0, 1) [0.999] */
    NN_OPTIM_EPS = 7,          /* Adam(W) [1e-8], RMSprop [1e-8], Adagrad [1e-10]: >= 0 */
    NN_OPTIM_AMSGRAD = 8,      /* Adam, AdamW: 0 or 1 [0] */
    NN_OPTIM_ALPHA = 9,        /* RMSprop smoothing: >= 0 [0.99] */
    NN_OPTIM_CENTERED = 10,    /* RMSprop: 0 or 1 [0] */
    NN_OPTIM_LR_DECAY = 11,    /* Adagrad: >= 0 [0] */
    NN_OPTIM_INITIAL_ACCUMULATOR_VALUE = 12 /* Adagrad: >= 0 [0]; set before the first step */
} nn_optim_option;

/* An optimizer of `type` over params[0..n) (one group, learning rate lr).
 * It takes its own references to the params. NULL on error. */
NN_API nn_optim *nn_optim_new(nn_optim_type type, nn_tensor *const *params, int64_t n, double lr);
/* An optimizer over every parameter of module (nn_module_parameter order),
 * like torch.optim.X(model.parameters(), lr). NULL on error. */
NN_API nn_optim *nn_optim_new_module(nn_optim_type type, nn_module *module, double lr);
/* Short forms of nn_optim_new over an explicit parameter list. */
NN_API nn_optim *nn_sgd(nn_tensor *const *params, int64_t n, double lr, double momentum);
NN_API nn_optim *nn_adam(nn_tensor *const *params, int64_t n, double lr);
NN_API nn_optim *nn_adamw(nn_tensor *const *params, int64_t n, double lr, double weight_decay);
NN_API nn_optim *nn_rmsprop(nn_tensor *const *params, int64_t n, double lr);
NN_API nn_optim *nn_adagrad(nn_tensor *const *params, int64_t n, double lr);
/* Release the optimizer (its state and parameter references). NULL is a no-op. */
NN_API void nn_optim_free(nn_optim *opt);
/* The optimizer's type. */
NN_API nn_optim_type nn_optim_get_type(const nn_optim *opt);

/* Add a parameter group with learning rate lr; its other options start as
 * the optimizer's defaults (see nn_optim_set). A parameter may be in one
 * group only (NN_ERR_INVALID). The new group's index is num_groups - 1. */
NN_API nn_status nn_optim_add_group(nn_optim *opt, nn_tensor *const *params, int64_t n, double lr);
/* Number of parameter groups (-1 on NULL). */
NN_API int nn_optim_num_groups(const nn_optim *opt);
/* Total number of parameters over all groups, and parameter i (borrowed),
 * numbered in group order: the index used by the state dict. */
NN_API int64_t nn_optim_num_params(const nn_optim *opt);
NN_API nn_tensor *nn_optim_param(const nn_optim *opt, int64_t i);
/* Set an option in every group and as the default for groups added later.
 * Out-of-range values and options of other optimizer types: NN_ERR_INVALID
 * (nothing changes). */
NN_API nn_status nn_optim_set(nn_optim *opt, nn_optim_option option, double value);
/* Set an option in one group. */
NN_API nn_status nn_optim_set_group(nn_optim *opt, int group, nn_optim_option option,
                                    double value);
/* Read an option of one group into *value. */
NN_API nn_status nn_optim_get(const nn_optim *opt, int group, nn_optim_option option,
                              double *value);

/* Drop the gradient of every parameter (PyTorch's zero_grad(set_to_none=True)). */
NN_API nn_status nn_optim_zero_grad(nn_optim *opt);
/* One update of every parameter that has a gradient (grad mode off inside).
 * NN_ERR_NO_GRAD if no parameter has one; NN_ERR_INVALID for an invalid
 * option combination (nesterov without momentum). */
NN_API nn_status nn_optim_step(nn_optim *opt);

/* The optimizer state as a new map (free with nn_statedict_free): per
 * parameter i (nn_optim_param order) "state.<i>.step" (0-d f32, as PyTorch)
 * and its buffers "state.<i>.momentum_buffer", ".exp_avg", ".exp_avg_sq",
 * ".max_exp_avg_sq", ".square_avg", ".grad_avg", ".sum"; per group g every
 * option as "param_groups.<g>.<name>" ("lr", "momentum", ...): a [1] i64
 * tensor holding the IEEE-754 bits of the double, so values restore exactly. */
NN_API nn_statedict *nn_optim_state_dict(const nn_optim *opt);
/* Restore state exported by nn_optim_state_dict from an optimizer of the same
 * type and parameter shapes (copies the tensors). Shape mismatches:
 * NN_ERR_SHAPE; missing group options: NN_ERR_NOT_FOUND. Nothing changes on error. */
NN_API nn_status nn_optim_load_state_dict(nn_optim *opt, const nn_statedict *sd);

/* --- gradient clipping ---------------------------------------------------- */

/* Scale the gradients of params[0..n) so that their global norm_type-norm
 * (2 for Euclidean, INFINITY for max-abs; > 0) is at most max_norm, like
 * torch.nn.utils.clip_grad_norm_. Returns the norm before clipping (NaN on
 * error). Parameters without a gradient are skipped. */
NN_API double nn_clip_grad_norm(nn_tensor *const *params, int64_t n, double max_norm,
                                double norm_type);
/* Clamp every gradient element of params[0..n) into [-clip, clip] (clip >= 0). */
NN_API nn_status nn_clip_grad_value(nn_tensor *const *params, int64_t n, double clip);
/* nn_clip_grad_norm over all parameters of an optimizer. */
NN_API double nn_optim_clip_grad_norm(nn_optim *opt, double max_norm, double norm_type);

/* ====================================================================== */
/*  Learning-rate schedules                                               */
/* ====================================================================== */
/*
 * A schedule drives the learning rate of every group of one optimizer (it
 * holds a reference to it). Creating it sets the epoch-0 rate, as PyTorch's
 * constructors do; call nn_sched_step once per epoch after the optimizer
 * steps. The rates match PyTorch 1.13's schedulers (their chainable forms)
 * stepped the same way. The base rate of each group is its lr at creation.
 * A schedule, like its optimizer, must not be used from two threads at once.
 */

/* lr * gamma every step_size epochs (step_size >= 1). */
NN_API nn_sched *nn_sched_step_lr(nn_optim *opt, int64_t step_size, double gamma);
/* lr * gamma at each milestone (increasing epochs, n >= 1). */
NN_API nn_sched *nn_sched_multistep(nn_optim *opt, const int64_t *milestones, int64_t n,
                                    double gamma);
/* lr * gamma every epoch. */
NN_API nn_sched *nn_sched_exponential(nn_optim *opt, double gamma);
/* Cosine annealing from the base rate to eta_min over t_max epochs (t_max >= 1). */
NN_API nn_sched *nn_sched_cosine(nn_optim *opt, int64_t t_max, double eta_min);
/* Cosine annealing restarted after t_0, t_0 * t_mult, ... epochs (t_0, t_mult >= 1). */
NN_API nn_sched *nn_sched_cosine_warm_restarts(nn_optim *opt, int64_t t_0, int64_t t_mult,
                                               double eta_min);
/* Linear warm-up (LinearLR): factor from start_factor (0 < s <= 1) to
 * end_factor (0 <= e <= 1) over total_iters epochs. */
NN_API nn_sched *nn_sched_linear(nn_optim *opt, double start_factor, double end_factor,
                                 int64_t total_iters);

typedef enum nn_anneal {
    NN_ANNEAL_COS = 0,
    NN_ANNEAL_LINEAR = 1
} nn_anneal;

/* One-cycle policy (two phases; momentum is cycled only after
 * nn_sched_cycle_momentum): from max_lr /
 * div_factor up to max_lr over pct_start of total_steps, then down to
 * max_lr / div_factor / final_div_factor. Stepping past total_steps is
 * NN_ERR_STATE. PyTorch's defaults: pct_start 0.3, div 25, final_div 1e4. */
NN_API nn_sched *nn_sched_one_cycle(nn_optim *opt, double max_lr, int64_t total_steps,
                                    double pct_start, nn_anneal anneal, double div_factor,
                                    double final_div_factor);

/* Also cycle the momentum of a one-cycle schedule inversely to the rate,
 * from max_momentum down to base_momentum and back (PyTorch's default
 * cycle_momentum=True with 0.85 / 0.95): SGD / RMSprop momentum, Adam(W)
 * beta1. Sets the current value at once. NN_ERR_STATE for other schedules,
 * NN_ERR_INVALID for Adagrad or 0 <= base <= max < 1 violated. */
NN_API nn_status nn_sched_cycle_momentum(nn_sched *s, double base_momentum, double max_momentum);

typedef enum nn_sched_mode {
    NN_SCHED_MODE_MIN = 0, /* the metric should decrease (a loss) */
    NN_SCHED_MODE_MAX = 1  /* the metric should increase (an accuracy) */
} nn_sched_mode;

/* ReduceLROnPlateau with relative threshold: multiply every lr by factor
 * (< 1) when the metric has not improved by more than threshold (relative)
 * for patience epochs, then wait cooldown epochs; never below min_lr.
 * Step it with nn_sched_step_metric. */
NN_API nn_sched *nn_sched_plateau(nn_optim *opt, nn_sched_mode mode, double factor,
                                  int64_t patience, double threshold, int64_t cooldown,
                                  double min_lr);

/* Release the schedule (and its optimizer reference). NULL is a no-op. */
NN_API void nn_sched_free(nn_sched *s);
/* Advance one epoch and set the new rates (NN_ERR_STATE for plateau). */
NN_API nn_status nn_sched_step(nn_sched *s);
/* Advance a plateau schedule with this epoch's metric (NN_ERR_STATE for others;
 * NN_ERR_INVALID for NaN). */
NN_API nn_status nn_sched_step_metric(nn_sched *s, double metric);
/* The current learning rate of group `group` (NaN on error). */
NN_API double nn_sched_get_lr(const nn_sched *s, int group);
/* The number of epochs stepped so far (PyTorch's last_epoch; -1 on NULL). */
NN_API int64_t nn_sched_last_epoch(const nn_sched *s);
/* Schedule state as a new map ("last_epoch", "base_lr.<g>", and the
 * schedule's counters), doubles stored as in nn_optim_state_dict. */
NN_API nn_statedict *nn_sched_state_dict(const nn_sched *s);
/* Restore state from nn_sched_state_dict of a schedule of the same kind;
 * nothing changes on error. The optimizer's rates are restored by
 * nn_optim_load_state_dict, not here. */
NN_API nn_status nn_sched_load_state_dict(nn_sched *s, const nn_statedict *sd);

#endif
