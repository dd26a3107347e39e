"""The two-headed network (``embedding_dim > 0``) of every architecture: same logits, same embedding,
same discriminative loss and same weight gradients in torch and Keras from one canonical checkpoint."""

import numpy as np
import pytest
import tensorflow as tf
import torch

from segmentation_tf.instance import DiscriminativeLoss as KerasDiscriminativeLoss
from segmentation_tf.registry import build_model as keras_model
from segmentation_tf.weights import from_canonical as keras_from_canonical
from segmentation_tf.weights import tensor_refs as keras_refs
from segmentation_torch.instance import DiscriminativeLoss
from segmentation_torch.registry import build_model as torch_model
from segmentation_torch.weights import tensor_refs as torch_refs
from segmentation_torch.weights import to_canonical
from segparity.weights.layout import permute_axes
from segparity.comparison.tolerance import assert_close
from segparity.data.synthetic import standardize, synthetic_batch
from segparity.comparison.trace import gradient_scale, instance_targets

TINY = {
    "unet": (dict(base_channels=4, depth=2), 16),
    "segnet": (dict(encoder=((4,), (8,)), decoder=((4,), (4,))), 16),
    "fcn": (dict(encoder=((4,),) * 5, fc_channels=8, fc_kernel_size=1), 32),
    "deeplabv3plus": (dict(stem_channels=4, stage_channels=(4, 4, 8, 8), blocks_per_stage=(1, 1, 1, 1),
                           aspp_channels=4, aspp_rates=(1, 2, 3), low_level_channels=4, decoder_channels=4), 32),
}


@pytest.mark.parametrize("arch", sorted(TINY))
def test_two_headed_network_agrees(arch):
    options, size = TINY[arch]
    spec = dict(in_channels=3, num_classes=3, embedding_dim=3, **options)
    torch.manual_seed(0)
    net_t = torch_model(arch, **spec)
    net_k = keras_model(arch, **spec)
    keras_from_canonical(net_k, to_canonical(net_t))
    images, labels = synthetic_batch(4, 3, size, size, 3, seed=1)
    images = standardize(images)
    instances = instance_targets(labels, None)
    assert instances.max() >= 2  # several instances: the push term is active

    logits_t, embedding_t = net_t.eval()(torch.from_numpy(images))
    logits_k, embedding_k = net_k(images.transpose(0, 2, 3, 1), training=False)
    assert embedding_t.shape == (4, 3, size, size) and tuple(embedding_k.shape) == (4, size, size, 3)
    assert_close(logits_k.numpy().transpose(0, 3, 1, 2), logits_t.detach().numpy(), quantity="logits")
    assert_close(embedding_k.numpy().transpose(0, 3, 1, 2), embedding_t.detach().numpy(), quantity="embedding")

    net_t.train()
    refs_t = {key: ref for key, ref in torch_refs(net_t).items() if ref[0].requires_grad}
    loss_t = DiscriminativeLoss()(net_t(torch.from_numpy(images))[1], torch.from_numpy(instances))
    grads_t = torch.autograd.grad(loss_t, [ref[0] for ref in refs_t.values()])
    refs_k = {key: ref for key, ref in keras_refs(net_k).items() if ref[0].trainable}
    with tf.GradientTape() as tape:
        loss_k = KerasDiscriminativeLoss()(tf.constant(instances), net_k(images.transpose(0, 2, 3, 1), training=True)[1])
    grads_k = tape.gradient(loss_k, [ref[0] for ref in refs_k.values()])
    assert list(refs_t) == list(refs_k)
    assert_close(float(loss_k), float(loss_t.detach()), quantity="loss_discriminative")
    expected = {key: permute_axes(g.numpy(), axes, canon) for (key, (_, axes, canon)), g in zip(refs_t.items(), grads_t)}
    actual = {key: permute_axes(g.numpy(), axes, canon) for (key, (_, axes, canon)), g in zip(refs_k.items(), grads_k)}
    scale = gradient_scale(expected)
    assert scale > 0
    for key in expected:
        assert_close(actual[key], expected[key], scale=scale, quantity=f"grad {key}")
