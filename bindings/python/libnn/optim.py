"""Optimizers and learning-rate schedules, shaped like torch.optim."""
from ctypes import byref, c_double, c_void_p

from . import _decls
from ._lib import check, check_ptr, lib, raise_last
from ._handle import Handle
from ._tensor import Tensor, _h

_OPTION = {k[len('NN_OPTIM_'):].lower(): v for k, v in _decls.ENUMS['nn_optim_option']}
_TYPE = {k[len('NN_OPTIM_TYPE_'):]: v for k, v in _decls.ENUMS['nn_optim_type']}

__all__ = ['Optimizer', 'SGD', 'Adam', 'AdamW', 'RMSprop', 'Adagrad', 'lr_scheduler']


def _param_array(params):
    params = list(params)
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError('optimizer parameters must be libnn Tensors, got %s'
                            % type(p).__name__)
    arr = (c_void_p * max(len(params), 1))(*[_h(p) for p in params])
    return arr, len(params), params


class _ParamGroup:
    """One parameter group: g['lr'] reads, g['lr'] = 0.1 sets (like torch)."""

    def __init__(self, opt, index):
        self._opt, self._index = opt, index

    def __getitem__(self, key):
        return self._opt.get(key, self._index)

    def __setitem__(self, key, value):
        self._opt.set(key, value, group=self._index)

    def get(self, key, default=None):
        try:
            return self[key]
        except Exception:
            return default

    def keys(self):
        out = []
        for k in _OPTION:
            v = c_double()
            if lib.nn_optim_get(self._opt._handle(), self._index, _OPTION[k], byref(v)) == 0:
                out.append(k)
        lib.nn_clear_error()
        return out

    def __repr__(self):
        return repr({k: self[k] for k in self.keys()})


class Optimizer(Handle):
    """Base class: holds one C optimizer and the Python parameter objects."""

    _type = None
    _free = staticmethod(lib.nn_optim_free)

    def __init__(self, params, lr, **options):
        from .nn import Module
        from ._lib import missing_names
        if isinstance(params, Module) and 'nn_optim_new_module' in missing_names:
            params = params.parameters()   # an older library: same order
        if isinstance(params, Module):
            # Every parameter of the module, in nn_module_parameter order.
            self._params = [params]
            self._h = check_ptr(lib.nn_optim_new_module(_TYPE[self._type], params._handle(),
                                                        float(lr)))
            for k, v in options.items():
                if v is not None:
                    self.set(k, v)
            return
        groups = list(params)
        if groups and isinstance(groups[0], dict):
            first, rest = groups[0], groups[1:]
        else:
            first, rest = {'params': groups}, []
        lr0 = first.get('lr', lr)
        arr, n, keep = _param_array(first['params'])
        self._params = list(keep)
        self._h = check_ptr(lib.nn_optim_new(_TYPE[self._type], arr, n, float(lr0)))
        for k, v in options.items():
            if v is not None:
                self.set(k, v)
        self._group_options(first, 0)
        for g in rest:
            arr, n, keep = _param_array(g['params'])
            self._params += keep
            check(lib.nn_optim_add_group(self._h, arr, n, float(g.get('lr', lr))))
            self._group_options(g, len(self.param_groups) - 1)

    def _group_options(self, g, index):
        for k, v in g.items():
            if k not in ('params', 'lr'):
                self.set(k, v, group=index)

    @staticmethod
    def _key(option):
        if option == 'betas':
            raise KeyError('use beta1 / beta2')
        try:
            return _OPTION[option]
        except KeyError:
            raise KeyError('unknown optimizer option %r (known: %s)'
                           % (option, ', '.join(sorted(_OPTION)))) from None

    def set(self, option, value, group=None):
        """Set an option (in every group, or in one)."""
        if option == 'betas':
            self.set('beta1', value[0], group)
            self.set('beta2', value[1], group)
            return
        value = float(value) if not isinstance(value, bool) else float(int(value))
        if group is None:
            check(lib.nn_optim_set(self._handle(), self._key(option), value))
        else:
            check(lib.nn_optim_set_group(self._handle(), int(group), self._key(option), value))

    def get(self, option, group=0):
        if option == 'betas':
            return (self.get('beta1', group), self.get('beta2', group))
        v = c_double()
        check(lib.nn_optim_get(self._handle(), int(group), self._key(option), byref(v)))
        return v.value

    @property
    def type(self):
        """'SGD', 'ADAM', 'ADAMW', 'RMSPROP' or 'ADAGRAD'."""
        t = lib.nn_optim_get_type(self._handle())
        return {v: k for k, v in _TYPE.items()}.get(t, str(t))

    @property
    def params(self):
        """Every parameter over all groups, in state-dict index order."""
        from ._tensor import _wrap_borrowed
        h = self._handle()
        n = lib.nn_optim_num_params(h)
        if n < 0:
            raise_last()
        return [_wrap_borrowed(check_ptr(lib.nn_optim_param(h, i))) for i in range(n)]

    @property
    def param_groups(self):
        n = lib.nn_optim_num_groups(self._handle())
        if n < 0:
            raise_last()
        return [_ParamGroup(self, i) for i in range(n)]

    def add_param_group(self, group):
        arr, n, keep = _param_array(group['params'])
        self._params += keep
        check(lib.nn_optim_add_group(self._handle(), arr, n,
                                     float(group.get('lr', self.get('lr')))))
        self._group_options(group, len(self.param_groups) - 1)

    def zero_grad(self, set_to_none=True):
        check(lib.nn_optim_zero_grad(self._handle()))

    def step(self):
        check(lib.nn_optim_step(self._handle()))

    def state_dict(self):
        from .nn import _take_sd
        return _take_sd(check_ptr(lib.nn_optim_state_dict(self._handle())))

    def load_state_dict(self, state):
        from .nn import _call_with_sd
        _call_with_sd(state, lambda sd: check(lib.nn_optim_load_state_dict(self._handle(), sd)))

    def clip_grad_norm_(self, max_norm, norm_type=2.0):
        v = lib.nn_optim_clip_grad_norm(self._handle(), float(max_norm), float(norm_type))
        if v != v:
            raise_last(-3, 'clip_grad_norm_: the norm is NaN')
        return v

    def __repr__(self):
        return '%s(%s)' % (type(self).__name__, self.param_groups)


class SGD(Optimizer):
    _type = 'SGD'

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, lr, momentum=momentum or None, dampening=dampening or None,
                         weight_decay=weight_decay or None, nesterov=nesterov or None)


class Adam(Optimizer):
    _type = 'ADAM'

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params, lr, beta1=betas[0], beta2=betas[1], eps=eps,
                         weight_decay=weight_decay or None, amsgrad=amsgrad or None)


class AdamW(Optimizer):
    _type = 'ADAMW'

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 amsgrad=False):
        super().__init__(params, lr, beta1=betas[0], beta2=betas[1], eps=eps,
                         weight_decay=weight_decay, amsgrad=amsgrad or None)


class RMSprop(Optimizer):
    _type = 'RMSPROP'

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params, lr, alpha=alpha, eps=eps, weight_decay=weight_decay or None,
                         momentum=momentum or None, centered=centered or None)


class Adagrad(Optimizer):
    _type = 'ADAGRAD'

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params, lr, lr_decay=lr_decay or None,
                         weight_decay=weight_decay or None,
                         initial_accumulator_value=initial_accumulator_value or None, eps=eps)


# ------------------------------------------------------------- schedules


class _Scheduler(Handle):
    """Base class: holds one C schedule and its Python optimizer."""

    _free = staticmethod(lib.nn_sched_free)

    def __init__(self, optimizer, ptr):
        self.optimizer = optimizer   # keeps the Python optimizer alive too
        self._h = check_ptr(ptr)

    def step(self, metric=None):
        if metric is None:
            check(lib.nn_sched_step(self._handle()))
        else:
            check(lib.nn_sched_step_metric(self._handle(), float(metric)))

    def get_last_lr(self):
        out = []
        for g in range(len(self.optimizer.param_groups)):
            v = lib.nn_sched_get_lr(self._handle(), g)
            if v != v:
                raise_last()
            out.append(v)
        return out

    @property
    def last_epoch(self):
        return lib.nn_sched_last_epoch(self._handle())

    def state_dict(self):
        from .nn import _take_sd
        return _take_sd(check_ptr(lib.nn_sched_state_dict(self._handle())))

    def load_state_dict(self, state):
        from .nn import _call_with_sd
        _call_with_sd(state, lambda sd: check(lib.nn_sched_load_state_dict(self._handle(), sd)))


class StepLR(_Scheduler):
    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer, lib.nn_sched_step_lr(optimizer._handle(), int(step_size),
                                                         float(gamma)))


class MultiStepLR(_Scheduler):
    def __init__(self, optimizer, milestones, gamma=0.1):
        from ._tensor import _shape_arg
        arr, n = _shape_arg(milestones)
        super().__init__(optimizer, lib.nn_sched_multistep(optimizer._handle(), arr, n,
                                                           float(gamma)))


class ExponentialLR(_Scheduler):
    def __init__(self, optimizer, gamma):
        super().__init__(optimizer, lib.nn_sched_exponential(optimizer._handle(), float(gamma)))


class CosineAnnealingLR(_Scheduler):
    def __init__(self, optimizer, T_max, eta_min=0.0):  # noqa: N803
        super().__init__(optimizer, lib.nn_sched_cosine(optimizer._handle(), int(T_max),
                                                        float(eta_min)))


class CosineAnnealingWarmRestarts(_Scheduler):
    def __init__(self, optimizer, T_0, T_mult=1, eta_min=0.0):  # noqa: N803
        super().__init__(optimizer, lib.nn_sched_cosine_warm_restarts(
            optimizer._handle(), int(T_0), int(T_mult), float(eta_min)))


class LinearLR(_Scheduler):
    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
        super().__init__(optimizer, lib.nn_sched_linear(optimizer._handle(),
                                                        float(start_factor),
                                                        float(end_factor), int(total_iters)))


class OneCycleLR(_Scheduler):
    """One-cycle policy; like PyTorch, the momentum (Adam's beta1) is cycled
    between max_momentum and base_momentum unless cycle_momentum=False."""

    def __init__(self, optimizer, max_lr, total_steps, pct_start=0.3, anneal_strategy='cos',
                 cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4):
        anneal = {'cos': 0, 'linear': 1}[anneal_strategy]
        super().__init__(optimizer, lib.nn_sched_one_cycle(
            optimizer._handle(), float(max_lr), int(total_steps), float(pct_start), anneal,
            float(div_factor), float(final_div_factor)))
        if cycle_momentum:
            check(lib.nn_sched_cycle_momentum(self._h, float(base_momentum),
                                              float(max_momentum)))


class ReduceLROnPlateau(_Scheduler):
    def __init__(self, optimizer, mode='min', factor=0.1, patience=10, threshold=1e-4,
                 cooldown=0, min_lr=0.0):
        m = {'min': 0, 'max': 1}[mode]
        super().__init__(optimizer, lib.nn_sched_plateau(
            optimizer._handle(), m, float(factor), int(patience), float(threshold),
            int(cooldown), float(min_lr)))


class _LRSchedulerNS:
    StepLR, MultiStepLR, ExponentialLR = StepLR, MultiStepLR, ExponentialLR
    CosineAnnealingLR, CosineAnnealingWarmRestarts = CosineAnnealingLR, \
        CosineAnnealingWarmRestarts
    LinearLR, OneCycleLR, ReduceLROnPlateau = LinearLR, OneCycleLR, ReduceLROnPlateau


lr_scheduler = _LRSchedulerNS
