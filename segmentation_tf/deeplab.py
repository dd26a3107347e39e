"""DeepLabV3+ in Keras 3. Input ``(N, H, W, C_in)`` float32, output ``(N, H, W, num_classes)`` logits.

Layers and options: ``segparity.networks.deeplab``. Layer names (``encoder.2.0.conv1.conv``,
``aspp.branches.1``) equal the torch attribute paths in ``segmentation_torch/deeplab.py``. Every
resize is bilinear with half-pixel centres (torch's ``align_corners=False``); stride-2 convs pad one
pixel on every side as torch does, not Keras ``"same"`` (``segmentation_tf.layers.conv2d``). With
``backbone="resnet34"`` (or 18, 50, 101) the encoder is torchvision's ResNet (``segmentation_tf/backbones/resnet.py``)
with layers named ``encoder.conv1``, ``encoder.layer1.0.conv1``...
"""

from __future__ import annotations

import keras
from keras import ops

from segmentation_tf.backbones.resnet import ResNet
from segmentation_tf.layers import ConvBNReLU, conv2d, resize_bilinear, split_outputs
from segparity.networks.deeplab import DeepLabV3PlusSpec
from segparity.networks.layer_flavours import check_layers
from segparity.validation import check_image_batch


class BasicBlock(keras.layers.Layer):
    """ReLU(conv1 -> conv2 + shortcut): two 3x3 conv-BN (ReLU after the first), 1x1 conv-BN shortcut if needed."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, dilation: int, spec: DeepLabV3PlusSpec, layers: str,
                 name: str):
        super().__init__(name=name)
        bn = dict(batch_norm=True, bn_eps=spec.bn_eps, bn_momentum=spec.bn_momentum, layers=layers)
        self.conv1 = ConvBNReLU(in_channels, out_channels, 3, stride=stride, dilation=dilation, **bn,
                                name=f"{name}.conv1")
        self.conv2 = ConvBNReLU(out_channels, out_channels, 3, dilation=dilation, relu=False, **bn,
                                name=f"{name}.conv2")
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvBNReLU(in_channels, out_channels, 1, stride=stride, relu=False, **bn,
                                       name=f"{name}.shortcut")
        else:
            self.shortcut = None
        self.built = True

    def call(self, x, training=False):
        identity = x if self.shortcut is None else self.shortcut(x, training=training)
        return ops.relu(self.conv2(self.conv1(x, training=training), training=training) + identity)


class ASPP(keras.layers.Layer):
    """Atrous spatial pyramid pooling: 1x1, three atrous 3x3 and image pooling, concatenated, projected."""

    def __init__(self, in_channels: int, *, spec: DeepLabV3PlusSpec, layers: str, name: str):
        super().__init__(name=name)
        bn = dict(batch_norm=True, bn_eps=spec.bn_eps, bn_momentum=spec.bn_momentum, layers=layers)
        a = spec.aspp_channels
        self.branches = [ConvBNReLU(in_channels, a, 1, **bn, name=f"{name}.branches.0")]
        for r, rate in enumerate(spec.rates(), start=1):
            self.branches.append(ConvBNReLU(in_channels, a, 3, dilation=rate, **bn, name=f"{name}.branches.{r}"))
        self.pool = ConvBNReLU(in_channels, a, 1, **bn, name=f"{name}.pool")
        self.project = ConvBNReLU(5 * a, a, 1, **bn, name=f"{name}.project")
        self.built = True

    def call(self, x, training=False):
        outputs = [branch(x, training=training) for branch in self.branches]
        pooled = self.pool(ops.mean(x, axis=(1, 2), keepdims=True), training=training)  # (N, 1, 1, a)
        shape = ops.shape(x)
        outputs.append(ops.broadcast_to(pooled, (shape[0], shape[1], shape[2], ops.shape(pooled)[3])))
        return self.project(ops.concatenate(outputs, axis=-1), training=training)


class Decoder(keras.layers.Layer):
    """Resize the ASPP output to the low-level features' size, concatenate ``[aspp, reduced]``, two 3x3 convs."""

    def __init__(self, low_level_in: int, *, spec: DeepLabV3PlusSpec, layers: str, name: str):
        super().__init__(name=name)
        bn = dict(batch_norm=True, bn_eps=spec.bn_eps, bn_momentum=spec.bn_momentum, layers=layers)
        d = spec.decoder_channels
        self.reduce = ConvBNReLU(low_level_in, spec.low_level_channels, 1, **bn, name=f"{name}.reduce")
        self.fuse = [ConvBNReLU(spec.aspp_channels + spec.low_level_channels, d, 3, **bn, name=f"{name}.fuse.0"),
                     ConvBNReLU(d, d, 3, **bn, name=f"{name}.fuse.1")]
        self.built = True

    def call(self, x, low_level, training=False):
        x = resize_bilinear(x, ops.shape(low_level)[1], ops.shape(low_level)[2])
        x = ops.concatenate([x, self.reduce(low_level, training=training)], axis=-1)
        for layer in self.fuse:
            x = layer(x, training=training)
        return x


@keras.saving.register_keras_serializable(package="segparity")  # a .keras file names it "segparity>DeepLabV3Plus"
class DeepLabV3Plus(keras.Model):
    """DeepLabV3+; arguments as ``segparity.networks.deeplab.DeepLabV3PlusSpec``, and ``layers``
    (``segparity.networks.layer_flavours``)."""

    def __init__(self, in_channels: int, num_classes: int, output_stride: int = 16, stem_channels: int = 64,
                 stage_channels: tuple = (64, 128, 256, 512), blocks_per_stage: tuple = (2, 2, 2, 2),
                 aspp_channels: int = 256, aspp_rates: tuple | None = None, low_level_channels: int = 48,
                 decoder_channels: int = 256, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 embedding_dim: int = 0, backbone: str | None = None, layers: str = "parity", **kwargs):
        super().__init__(**kwargs)
        self.spec = DeepLabV3PlusSpec(in_channels, num_classes, output_stride, stem_channels, stage_channels,
                                      blocks_per_stage, aspp_channels, aspp_rates, low_level_channels,
                                      decoder_channels, bn_eps, bn_momentum, embedding_dim, backbone)
        self.layer_flavour = check_layers(layers)
        spec = self.spec
        low_level, cin = spec.encoder_channels()
        if backbone is not None:
            self.encoder = ResNet(spec.depth(), spec.replace_stride_with_dilation(), num_classes=None,
                                  dilation_rule="smp", in_channels=in_channels, layers=layers, name="encoder")
        else:
            self.stem = ConvBNReLU(in_channels, stem_channels, 3, stride=2, batch_norm=True, bn_eps=bn_eps,
                                   bn_momentum=bn_momentum, layers=layers, name="stem")
            self.encoder = []
            channels = stem_channels
            for i, ((stride, dilation), cout, blocks) in enumerate(zip(spec.stage_strides(), stage_channels,
                                                                       blocks_per_stage)):
                stage = []
                for b in range(blocks):
                    stage.append(BasicBlock(channels, cout, stride=stride if b == 0 else 1, dilation=dilation,
                                            spec=spec, layers=layers, name=f"encoder.{i}.{b}"))
                    channels = cout
                self.encoder.append(stage)
        self.aspp = ASPP(cin, spec=spec, layers=layers, name="aspp")
        self.decoder = Decoder(low_level, spec=spec, layers=layers, name="decoder")
        self.head = conv2d(decoder_channels, self.spec.out_channels(), 1, name="head")
        self.built = True

    def call(self, x, training=False):
        check_image_batch(tuple(x.shape), keras.backend.standardize_dtype(x.dtype), spec=self.spec, layout="NHWC")
        height, width = ops.shape(x)[1], ops.shape(x)[2]
        x, low_level = self.encode(x, training=training)
        x = self.decoder(self.aspp(x, training=training), low_level, training=training)
        return split_outputs(resize_bilinear(self.head(x), height, width), self.spec)

    def encode(self, x, training=False):
        """(the ASPP's input, the output-stride-4 features the decoder reduces)."""
        if self.spec.backbone is not None:
            features = self.encoder.features(x, training=training)
            return features["layer4"], features["layer1"]
        x = self.stem(x, training=training)
        low_level = None
        for i, stage in enumerate(self.encoder):
            for block in stage:
                x = block(x, training=training)
            if i == 0:
                low_level = x  # output stride 4
        return x, low_level

    def get_config(self):
        return {"name": self.name, **self.spec.options(), "layers": self.layer_flavour}
