"""Optimisers with every hyper-parameter explicit, Keras side, computing torch's update rules.

Two Keras defaults differ from torch and are replaced here on purpose:
- ``keras.optimizers.Adam`` puts epsilon *after* folding both bias corrections into the step size
  ("epsilon hat" of Kingma & Ba, section 2), torch adds it to ``sqrt(v_hat)``; ``_TorchAdam`` uses
  torch's placement. The two differ wherever ``|g|`` is within a few orders of ``eps``.
- Keras ``weight_decay`` is decoupled (AdamW style); torch's ``weight_decay`` adds L2 to the
  gradient. Both classes here add ``weight_decay * w`` to the gradient, as torch does.
Keras SGD's ``m = momentum * m - lr * g; w += m`` equals torch's ``b = momentum * b + g; w -= lr * b``
for a constant learning rate.
"""

from __future__ import annotations

import keras
from keras import ops

OPTIMIZERS = ("sgd", "adam")


class _CoupledSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with torch's coupled L2 ``weight_decay``."""

    def __init__(self, *, l2: float, **kwargs):
        super().__init__(**kwargs)
        self.l2 = l2

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = gradient + self.l2 * ops.cast(variable, gradient.dtype)
        super().update_step(gradient, variable, learning_rate)


class _TorchAdam(keras.optimizers.Adam):
    """Adam with torch's update: ``w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``."""

    def __init__(self, *, l2: float, **kwargs):
        super().__init__(**kwargs)
        self.l2 = l2

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2:
            gradient = gradient + self.l2 * variable
        step = ops.cast(self.iterations + 1, variable.dtype)
        bias_correction1 = 1 - ops.power(ops.cast(self.beta_1, variable.dtype), step)
        bias_correction2 = 1 - ops.power(ops.cast(self.beta_2, variable.dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (gradient - m) * (1 - self.beta_1))
        self.assign(v, v * self.beta_2 + ops.square(gradient) * (1 - self.beta_2))
        denom = ops.sqrt(v) / ops.sqrt(bias_correction2) + self.epsilon
        self.assign_sub(variable, (lr / bias_correction1) * m / denom)


def build_optimizer(model: keras.Model, name: str, *, lr: float, momentum: float = 0.0,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                    weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """``"sgd"``: heavy-ball ``momentum``, no Nesterov. ``"adam"``: torch's Adam (eps outside the sqrt).
    ``weight_decay`` is L2 added to the gradient (torch's coupled form) in both. Built for ``model``'s
    trainable variables.
    """
    if name == "sgd":
        optimizer = _CoupledSGD(learning_rate=lr, momentum=momentum, nesterov=False, l2=weight_decay)
    elif name == "adam":
        optimizer = _TorchAdam(learning_rate=lr, beta_1=betas[0], beta_2=betas[1], epsilon=eps, l2=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    optimizer.build(model.trainable_variables)
    return optimizer
