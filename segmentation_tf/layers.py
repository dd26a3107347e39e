"""Building blocks with every numeric convention explicit. Tensors are ``(N, H, W, C)``.

Twin of ``segmentation_torch/layers.py``: the same functions and classes, in the same order.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from segparity.networks.layer_flavours import check_layers


class BatchNorm(keras.layers.Layer):
    """BatchNorm over the channel axis with ``torch.nn.BatchNorm2d``'s semantics.

    ``momentum`` is Keras's convention: moving = momentum * moving + (1 - momentum) * batch
    (so Keras momentum = 1 - torch momentum). It differs from ``keras.layers.BatchNormalization`` on
    purpose in one place: ``moving_variance`` is updated with the *unbiased* batch variance
    (times n / (n - 1), n = N*H*W), as torch does; normalisation uses the biased variance in both.
    Batch mean and variance are accumulated in float64 (float32 for 16-bit inputs), as torch's CPU kernel does, and
    the training-mode gradient is torch's CPU backward formula (``_batch_norm_train``), not autodiff through the
    moments (the synchronized path keeps autodiff, whose all-reduce carries the gradient across replicas).
    ``unbiased_running_var=False`` updates it with the biased variance, as ``keras.layers.BatchNormalization``
    does (the lesson's TensorFlow exercise, ``segparity.networks.lesson``).
    ``synchronized=True``: in training mode under a ``tf.distribute`` strategy with several replicas
    (``segparity train --distributed --sync-batchnorm``), the batch statistics are those of all replicas' batches
    together, as ``keras.layers.BatchNormalization(synchronized=True)`` computes them.
    """

    def __init__(self, num_features: int, *, eps: float, momentum: float, unbiased_running_var: bool = True,
                 synchronized: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.unbiased_running_var = unbiased_running_var
        self.synchronized = synchronized
        self.gamma = self.add_weight(shape=(num_features,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(num_features,), initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(shape=(num_features,), initializer="zeros", name="moving_mean",
                                           trainable=False)
        self.moving_variance = self.add_weight(shape=(num_features,), initializer="ones", name="moving_variance",
                                               trainable=False)
        self.built = True

    def call(self, x, training=False):
        if training:
            static = x.shape[0] is not None and x.shape[1] is not None and x.shape[2] is not None
            if static and x.shape[0] * x.shape[1] * x.shape[2] == 1:  # the check torch makes
                raise ValueError(f"Expected more than 1 value per channel when training, got input shape {tuple(x.shape)}")
            # torch's CPU kernel accumulates batch statistics one type wider: float64 for float32 input
            # (float32 sums put train-mode logits ~6x further from the exact value; pitfall
            # "bn_batch_statistics_accumulation"), float32 for bfloat16/float16 (mixed precision).
            dtype = keras.backend.standardize_dtype(x.dtype)
            wider = "float64" if dtype in ("float32", "float64") else "float32"
            shape = ops.shape(x)
            n = ops.cast(shape[0] * shape[1] * shape[2], x.dtype)
            replicas = tf.distribute.get_replica_context()
            if self.synchronized and replicas is not None and replicas.num_replicas_in_sync > 1:
                mean, variance, n = _synchronized_moments(ops.cast(x, wider), replicas)
                mean, variance, n = ops.cast(mean, x.dtype), ops.cast(variance, x.dtype), ops.cast(n, x.dtype)
                self._update_moving(mean, variance, n)
            else:  # torch's backward formula as the gradient (faster than autodiff through the moments)
                # float32 row sums added in float64 were 2.5x faster here but not torch's statistics to the last bit,
                # and a 13-BatchNorm VGG16-BN drifted past the tolerance in train mode (pitfall
                # "bn_batch_statistics_accumulation"): the sums stay in float64.
                mean, variance = ops.moments(ops.cast(x, wider), axes=[0, 1, 2])
                mean, variance = ops.cast(mean, x.dtype), ops.cast(variance, x.dtype)
                self._update_moving(mean, variance, n)
                # in x's dtype: a graph reads the float32 variables without Keras's mixed-precision autocast
                gamma, beta = (tf.cast(tf.convert_to_tensor(v), x.dtype) for v in (self.gamma, self.beta))
                return _batch_norm_train(x, gamma, beta, tf.stop_gradient(mean), tf.stop_gradient(variance), self.eps)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        # torch's CPU kernel folds everything per channel first, then makes one pass over x:
        # scale = gamma / sqrt(var + eps), y = x * scale + (beta - mean * scale).
        scale = ops.rsqrt(variance + self.eps) * self.gamma
        return x * scale + (self.beta - mean * scale)

    def _update_moving(self, mean, variance, n):
        """moving = momentum * moving + (1 - momentum) * batch; the variance's batch value unbiased (n / (n - 1))
        unless ``unbiased_running_var=False``."""
        running = variance * n / ops.maximum(n - 1.0, 1.0) if self.unbiased_running_var else variance
        self.moving_mean.assign(self.momentum * self.moving_mean + (1.0 - self.momentum) * mean)
        self.moving_variance.assign(self.momentum * self.moving_variance + (1.0 - self.momentum) * running)

    def get_config(self):
        return {**super().get_config(), "num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "unbiased_running_var": self.unbiased_running_var, "synchronized": self.synchronized}


@tf.custom_gradient
def _batch_norm_train(x, gamma, beta, mean, variance, eps):
    """Train-mode BatchNorm of ``x (N, H, W, C)`` with its batch ``mean`` and biased ``variance`` (per channel, held
    constant here), with torch's CPU backward formula as the gradient instead of autodiff through the moments:

        xc = x - mean, invstd = 1 / sqrt(variance + eps), n = N * H * W
        d_beta = sum(dy), d_gamma = sum(dy * xc) * invstd
        dx = (dy - sum(dy) / n - xc * sum(dy * xc) * invstd^2 / n) * invstd * gamma

    The same gradient as autodiff's, computed in float32 for float32 and 16-bit inputs (torch's kernel sums in float32
    too; 16-bit values are cast up first and the results back), in about 7 passes over the tensor instead of
    autodiff's ~15: Keras's parity U-Net step spends ~160 ms in BatchNorm ops instead of ~220 (README, Benchmarks)."""
    invstd = tf.math.rsqrt(variance + tf.cast(eps, variance.dtype))  # a graph passes eps as a float32 tensor
    scale = invstd * gamma
    y = x * scale + (beta - mean * scale)

    def grad(dy):
        wide = tf.float32 if x.dtype in (tf.float16, tf.bfloat16) else x.dtype
        x_, dy_, mean_ = tf.cast(x, wide), tf.cast(dy, wide), tf.cast(mean, wide)
        invstd_ = tf.math.rsqrt(tf.cast(variance, wide) + tf.cast(eps, wide))
        xc = x_ - mean_
        n = tf.cast(tf.size(x) // tf.shape(x)[-1], wide)
        grad_beta = tf.reduce_sum(dy_, axis=[0, 1, 2])
        dot = tf.reduce_sum(xc * dy_, axis=[0, 1, 2])
        dx = (dy_ - grad_beta / n - xc * (dot * invstd_ * invstd_ / n)) * (invstd_ * tf.cast(gamma, wide))
        return (tf.cast(dx, x.dtype), tf.cast(dot * invstd_, gamma.dtype), tf.cast(grad_beta, beta.dtype),
                None, None, None)

    return y, grad


def _synchronized_moments(x, replicas):
    """Per-channel mean, biased variance and count of ``x (N, H, W, C)`` over every replica's batch: sums, sums of
    squares and counts summed by one ``all_reduce`` (whose gradient TensorFlow all-reduces too), as the torch
    twin's ``_synchronized_forward`` does."""
    channels = x.shape[-1]
    count = ops.cast(ops.size(x) // channels, x.dtype)
    local = ops.concatenate([ops.sum(x, axis=[0, 1, 2]), ops.sum(x * x, axis=[0, 1, 2]), ops.reshape(count, (1,))])
    total = replicas.all_reduce(tf.distribute.ReduceOp.SUM, local)
    n = total[-1]
    mean = total[:channels] / n
    return mean, ops.maximum(total[channels:2 * channels] / n - mean * mean, 0.0), n


def batch_norm_layer(num_features: int, *, eps: float, momentum: float, layers: str,
                     unbiased_running_var: bool = True, name: str) -> keras.layers.Layer:
    """The built BatchNorm of flavour ``layers`` (``segparity.networks.layer_flavours``), ``momentum`` in Keras's
    convention.

    ``"parity"``: segparity's ``BatchNorm`` (``unbiased_running_var`` as given). ``"stock"``:
    ``keras.layers.BatchNormalization(epsilon=eps, momentum=momentum)`` itself: float32 batch statistics, the moving
    variance updated with the biased batch variance (Keras's own convention, whatever ``unbiased_running_var``
    says). The same four variables (``gamma``, ``beta``, ``moving_mean``, ``moving_variance``) either way."""
    if check_layers(layers) == "stock":
        layer = keras.layers.BatchNormalization(axis=-1, momentum=momentum, epsilon=eps, name=name)
        layer.build((None, None, None, num_features))
        return layer
    return BatchNorm(num_features, eps=eps, momentum=momentum, unbiased_running_var=unbiased_running_var, name=name)


_DILATED_CONV_IS_ONE_OP: dict[str, bool] = {}


def _dilated_conv_is_one_op(dtype: str = "float32") -> bool:
    """Whether this TensorFlow runs a dilated convolution *and its gradients* in ``dtype`` as one conv
    op. oneDNN (x86 CPUs) does for float32 and bfloat16, cuDNN (GPUs) does; TensorFlow's own CPU
    backprop kernels refuse dilation (float64 here, or a build without oneDNN). Probed once per dtype,
    on a 1x3x3x1 input, not assumed."""
    if dtype not in _DILATED_CONV_IS_ONE_OP:
        with tf.init_scope():  # eager even when first called while a tf.function is traced
            x, kernel = tf.ones((1, 3, 3, 1), dtype=dtype), tf.ones((3, 3, 1, 1), dtype=dtype)
            conv = dict(strides=[1, 1, 1, 1], padding="SAME", dilations=[1, 2, 2, 1])
            try:  # the three ops a training step runs (init_scope pauses gradient tapes, so called directly)
                tf.raw_ops.Conv2D(input=x, filter=kernel, **conv)
                tf.raw_ops.Conv2DBackpropInput(input_sizes=[1, 3, 3, 1], filter=kernel, out_backprop=x, **conv)
                tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=[3, 3, 1, 1], out_backprop=x, **conv)
                _DILATED_CONV_IS_ONE_OP[dtype] = True
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.NotFoundError):
                _DILATED_CONV_IS_ONE_OP[dtype] = False
    return _DILATED_CONV_IS_ONE_OP[dtype]


class _DilatedConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose dilated convolution is one conv op with ``dilations`` set.

    Keras calls ``tf.nn.convolution``, which runs any dilation > 1 as SpaceToBatchND -> conv ->
    BatchToSpaceND: the padded map is cut into rate x rate interleaved grids and every grid is
    convolved. For DeepLab's ASPP (rates 12 and 18 on an 8x8 map) that is 20-50x slower on a CPU than
    oneDNN's dilated kernel (pitfall ``tf_dilated_conv_space_to_batch``). Same numbers, same weights;
    falls back to Keras's path where the one-op gradient is missing (``_dilated_conv_is_one_op``).
    """

    def convolution_op(self, inputs, kernel):
        if self.dilation_rate == (1, 1):
            return super().convolution_op(inputs, kernel)
        if _dilated_conv_is_one_op(keras.backend.standardize_dtype(inputs.dtype)):
            return tf.nn.conv2d(inputs, kernel, strides=list(self.strides), padding=self.padding.upper(),
                                dilations=list(self.dilation_rate))
        if self.strides == (1, 1):
            return _dilated_conv_by_taps(inputs, kernel, self.dilation_rate, self.padding)
        return super().convolution_op(inputs, kernel)


def _dilated_conv_by_taps(x, kernel, dilation: tuple, padding: str):
    """A stride-1 dilated convolution as the sum of one 1x1 convolution (a matmul) per kernel tap, each on the
    window of ``x`` that tap sees: the fallback where TensorFlow has no one-op dilated gradient (float64 on a CPU).
    As many multiply-adds as the conv itself; Keras's SpaceToBatchND path instead convolves ``rate**2`` padded
    grids (DeepLabV3's rate 36 on a 3x3 map: 1296 grids, minutes per float64 step)."""
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    dh, dw = dilation
    if padding == "same":  # stride 1, odd kernel: dilation * (k - 1) / 2 on every side, as torch pads
        ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
        x = ops.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
    height, width = ops.shape(x)[1] - dh * (kh - 1), ops.shape(x)[2] - dw * (kw - 1)
    out = None
    for i in range(kh):
        for j in range(kw):
            window = x[:, i * dh:i * dh + height, j * dw:j * dw + width, :]
            tap = ops.tensordot(window, kernel[i, j], axes=1)
            out = tap if out is None else out + tap
    return out


class _SymmetricPadding:
    """Mixin for a Keras conv layer: ``symmetric_padding`` zeros on every side of H and W before the layer's
    own ``"valid"`` conv, i.e. torch's ``padding=p``."""

    symmetric_padding = 0

    def call(self, inputs):
        p = self.symmetric_padding
        return super().call(ops.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]]) if p else inputs)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        p = 2 * self.symmetric_padding
        return super().compute_output_shape((n, None if h is None else h + p, None if w is None else w + p, c))

    def get_config(self):
        return {**super().get_config(), "symmetric_padding": self.symmetric_padding}


class _SymmetricPadConv2D(_SymmetricPadding, _DilatedConv2D):
    """``keras.layers.Conv2D`` after ``padding`` zeros on every side, i.e. ``torch.nn.Conv2d(padding=p)``.

    Keras's own ``padding="same"`` pads ``max(k - s, 0)`` in total and puts the odd pixel at the
    bottom/right: at stride 2 with a 3x3 kernel and an even size that is 0 above and 1 below, where
    torch pads 1 and 1, so every output pixel is shifted (pitfall ``tf_same_padding_stride2``).
    """

    def __init__(self, filters: int, kernel_size: int, *, symmetric_padding: int, **kwargs):
        kwargs.pop("padding", None)  # from_config passes the inner "valid" back
        super().__init__(filters, kernel_size, padding="valid", **kwargs)
        self.symmetric_padding = symmetric_padding


class _SubsampledPointwiseConv2D(keras.layers.Conv2D):
    """A 1x1 convolution at stride s (valid padding), computed as ``x[:, ::s, ::s, :]`` followed by a
    stride-1 1x1 convolution: the same maths (a 1x1 kernel at stride s reads exactly those pixels), and
    cheaper. The layer keeps ``strides=s`` in its config and its output shape.

    Why: TensorFlow's oneDNN weight-gradient kernel of a *strided* 1x1 convolution is wrong on small
    inputs with few channels (64% off float64 under ``ONEDNN_MAX_CPU_ISA=AVX2``) and corrupts the heap
    there under AVX-512 (the process aborts); the stride-1 kernel is right (pitfall
    ``tf_onednn_strided_pointwise_weight_grad``, docs/pitfalls.md). ResNet's downsampling shortcut is
    such a convolution.
    """

    def convolution_op(self, inputs, kernel):
        sh, sw = self.strides
        return tf.nn.conv2d(inputs[:, ::sh, ::sw, :], kernel, strides=1, padding="VALID")


def conv2d(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
           dilation: int = 1, bias: bool = True, name: str) -> keras.layers.Conv2D:
    """A built Conv2D with ``torch.nn.Conv2d``'s padding: ``padding`` zeros on every side, whatever the stride.

    Keras ``"same"`` is used only where it is exactly that (stride 1, ``padding = dilation*(k-1)/2``); a dilated
    conv is ``_DilatedConv2D`` (one conv op, not Keras's space-to-batch); an unpadded 1x1 conv at stride > 1 is
    ``_SubsampledPointwiseConv2D`` (a strided slice, then a stride-1 conv: a TensorFlow bug avoided).
    """
    conv_class = keras.layers.Conv2D if dilation == 1 else _DilatedConv2D
    if kernel_size == 1 and stride > 1 and padding == 0:
        layer = _SubsampledPointwiseConv2D(out_channels, 1, strides=stride, padding="valid", use_bias=bias, name=name)
    elif padding == 0:
        layer = conv_class(out_channels, kernel_size, strides=stride, padding="valid", dilation_rate=dilation,
                           use_bias=bias, name=name)
    elif stride == 1 and kernel_size % 2 == 1 and padding == dilation * (kernel_size - 1) // 2:
        layer = conv_class(out_channels, kernel_size, strides=1, padding="same", dilation_rate=dilation,
                           use_bias=bias, name=name)
    else:
        layer = _SymmetricPadConv2D(out_channels, kernel_size, symmetric_padding=padding, strides=stride,
                                    dilation_rate=dilation, use_bias=bias, name=name)
    layer.build((None, None, None, in_channels))
    return layer


class _SymmetricPadDepthwiseConv2D(_SymmetricPadding, keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` after ``padding`` zeros on every side, as torch pads a grouped conv
    (Keras ``"same"`` at stride 2 pads only the bottom/right: pitfall ``tf_same_padding_stride2``)."""

    def __init__(self, kernel_size: int, *, symmetric_padding: int, **kwargs):
        kwargs.pop("padding", None)
        super().__init__(kernel_size, padding="valid", **kwargs)
        self.symmetric_padding = symmetric_padding


def depthwise_conv2d(channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0, dilation: int = 1,
                     bias: bool = True, name: str) -> keras.layers.DepthwiseConv2D:
    """One ``kernel_size`` filter per channel, padded like ``torch.nn.Conv2d(groups=channels, padding=...)``:
    a built ``DepthwiseConv2D`` (Keras's own op; ``Conv2D(groups=...)`` runs through a retraced XLA
    function on the CPU, ten times slower). Keras ``"same"`` where it is exactly torch's padding (stride 1,
    ``padding = dilation*(k-1)/2``): the padding inside the kernel, no separate ``Pad`` op (MobileNetV3's
    stride-1 depthwise convs: 2.1 ms of LR-ASPP's 48 ms forward at 2x3x256x256)."""
    if stride == 1 and kernel_size % 2 == 1 and padding == dilation * (kernel_size - 1) // 2:
        layer = keras.layers.DepthwiseConv2D(kernel_size, strides=1, padding="same", dilation_rate=dilation,
                                             use_bias=bias, name=name)
        layer.build((None, None, None, channels))
        return layer
    layer = _SymmetricPadDepthwiseConv2D(kernel_size, symmetric_padding=padding, strides=stride,
                                         dilation_rate=dilation, use_bias=bias, name=name)

    layer.build((None, None, None, channels))
    return layer


def conv3x3(in_channels: int, out_channels: int, *, padding: str, bias: bool, name: str) -> keras.layers.Conv2D:
    """3x3 convolution, stride 1: ``padding="same"`` pads 1 on every side (Keras ``"same"`` at stride 1
    is exactly torch's ``padding=1``), ``"valid"`` pads nothing."""
    return conv2d(in_channels, out_channels, 3, padding=1 if padding == "same" else 0, bias=bias, name=name)


class ConvBNReLU(keras.layers.Layer):
    """``conv`` -> [``bn``] -> [ReLU]. The conv has a bias only without BN (BN would cancel it).

    ``padding`` defaults to ``dilation * (kernel_size - 1) // 2`` on every side (size kept at stride 1).
    ``bn_momentum`` is torch's convention; the Keras BatchNorm gets ``1 - bn_momentum``. ``layers`` the
    BatchNorm's flavour (``batch_norm_layer``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int | None = None, dilation: int = 1, batch_norm: bool, bn_eps: float,
                 bn_momentum: float, relu: bool = True, layers: str = "parity", name: str):
        super().__init__(name=name)
        padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        self.conv = conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                           bias=not batch_norm, name=f"{name}.conv")
        self.bn = batch_norm_layer(out_channels, eps=bn_eps, momentum=1.0 - bn_momentum, layers=layers,
                                   name=f"{name}.bn") if batch_norm else None
        self.relu = relu
        self.built = True

    def call(self, x, training=False):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, training=training)
        return ops.relu(x) if self.relu else x


def max_pool_2x2(x, *, ceil_mode: bool = False):
    """2x2 max-pool, stride 2. ``ceil_mode=True`` keeps a last, partial row/column (Caffe's rounding):
    for a 2x2 window at stride 2 that is exactly Keras ``padding="same"`` (one pixel of -inf below/right)."""
    return ops.max_pool(x, pool_size=2, strides=2, padding="same" if ceil_mode else "valid")


def max_pool_with_indices(x):
    """2x2 max-pool, stride 2 (odd sizes floored), and the argmax of each window.

    Keras has no such layer; this is ``tf.nn.max_pool_with_argmax``. Indices ``(N, H//2, W//2, C)``
    int64 are TensorFlow's: flat positions ``((n * H + row) * W + col) * C + c`` in the whole batch
    (``include_batch_in_index=True``), so one scatter unpools a batch. They name the same elements as
    torch's per-plane ``row * W + col`` (``segparity.reference.unpooling.tf_to_torch_indices`` converts), and a tie
    goes to the first maximum in row-major order, as in torch (``tests/parity/test_unpooling.py``).
    """
    return tf.nn.max_pool_with_argmax(x, ksize=2, strides=2, padding="VALID", include_batch_in_index=True)


def max_unpool(x, indices, height: int, width: int):
    """Put each value of ``x (N, h, w, C)`` at its ``indices`` in a zero ``(N, height, width, C)`` map
    (a scatter into the flattened batch; its gradient gathers from the same positions)."""
    shape = tf.shape(x, out_type=tf.int64)
    height, width = tf.cast(height, tf.int64), tf.cast(width, tf.int64)  # static ints or traced sizes
    flat = tf.scatter_nd(tf.reshape(indices, [-1, 1]), tf.reshape(x, [-1]),
                         shape=tf.stack([shape[0] * height * width * shape[3]]))
    return tf.reshape(flat, tf.stack([shape[0], height, width, shape[3]]))


def upsample_bilinear_2x(x, align_corners: bool = False):
    """x2 bilinear resize with half-pixel centres (torch's ``align_corners=False``), edges clamped.

    Spelled out because ``keras.layers.UpSampling2D`` defaults to nearest-neighbour interpolation.
    ``align_corners=True`` maps the corner pixels' centres onto each other, as torch's ``nn.UpsamplingBilinear2d``
    (the lesson's PyTorch exercise): TensorFlow 2's resize has no such mode, so it is TF's ``ResizeBilinear`` op
    with ``align_corners=True`` (differentiable; computes in float32).
    """
    shape = ops.shape(x)
    if align_corners:
        resized = tf.raw_ops.ResizeBilinear(images=x, size=tf.stack([2 * shape[1], 2 * shape[2]]), align_corners=True,
                                            half_pixel_centers=False)
        return ops.cast(resized, x.dtype)
    return resize_bilinear(x, 2 * shape[1], 2 * shape[2])


def resize_bilinear(x, height: int, width: int):
    """Bilinear resize to ``height x width`` with half-pixel centres (torch's ``align_corners=False``), no antialiasing.

    ``tf.image.resize`` (what ``keras.ops.image.resize`` calls on this backend) because it also takes
    sizes that are only known while the graph runs (``tf.function`` with unknown height/width); it
    computes in float32, so float64 inputs are rounded there (the float64 parity test shows where).
    """
    resized = tf.image.resize(x, tf.stack([height, width]), method="bilinear", antialias=False)
    return ops.cast(resized, x.dtype)  # tf.image.resize returns float32 whatever the input dtype


def center_crop(x, height: int, width: int):
    """Crop the centre ``height x width`` of ``x``; the extra row/column, if odd, is cut at the bottom/right."""
    top = (ops.shape(x)[1] - height) // 2
    left = (ops.shape(x)[2] - width) // 2
    return x[:, top:top + height, left:left + width, :]


def crop(x, top: int, left: int, height: int, width: int):
    """The ``height x width`` window of ``x`` whose top-left pixel is ``(top, left)``."""
    return x[:, top:top + height, left:left + width, :]


def split_outputs(x, spec):
    """The head's ``(N, H, W, num_classes + embedding_dim)`` output as the model returns it: the logits
    alone when ``spec.embedding_dim`` is 0, else ``(logits (N, H, W, num_classes), embedding (N, H, W, E))``."""
    if spec.embedding_dim == 0:
        return x
    return x[..., :spec.num_classes], x[..., spec.num_classes:]
