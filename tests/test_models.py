"""The two U-Nets have the same structure, names, parameter counts and output sizes."""

import keras
import numpy as np
import pytest
import torch

import segmentation_tf as ktf
import segmentation_torch as kt
from shared.geometry import unet_output_size
from shared.layout import expected_tensors, parameter_count
from tests.test_specs import PAPER


def test_registries_agree():
    assert kt.list_models() == ktf.list_models() == ["unet"]


def test_paper_network_in_both_frameworks():
    spec_params = parameter_count(kt.build_model("unet", **PAPER).spec)
    torch_model = kt.build_model("unet", **PAPER)
    keras_model = ktf.build_model("unet", **PAPER)
    assert sum(p.numel() for p in torch_model.parameters()) == spec_params == 31_030_658
    assert sum(int(np.prod(v.shape)) for v in keras_model.trainable_variables) == spec_params


@pytest.mark.parametrize("padding, size", [("valid", 572), ("valid", 188), ("same", 64)])
@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_output_sizes_match_geometry(padding, size, upsample):
    options = dict(in_channels=1, num_classes=2, base_channels=2, depth=4, padding=padding, upsample=upsample)
    out = unet_output_size(size, 4, padding)
    torch_out = kt.build_model("unet", **options)(torch.zeros(1, 1, size, size))
    keras_out = ktf.build_model("unet", **options)(np.zeros((1, size, size, 1), np.float32))
    assert tuple(torch_out.shape) == (1, 2, out, out)
    assert tuple(keras_out.shape) == (1, out, out, 2)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_keras_layer_names_are_torch_attribute_paths(batch_norm):
    options = dict(in_channels=3, num_classes=2, base_channels=4, depth=2, batch_norm=batch_norm)
    torch_model, keras_model = kt.build_model("unet", **options), ktf.build_model("unet", **options)
    torch_state = {k for k in torch_model.state_dict() if not k.endswith("num_batches_tracked")}
    keras_paths = {v.path for v in keras_model.weights}
    torch_layers = {k.rsplit(".", 1)[0] for k in torch_state}
    keras_layers = {p.rsplit("/", 1)[0] for p in keras_paths}
    assert torch_layers == keras_layers
    canonical_layers = {k.rsplit(".", 1)[0] for k in expected_tensors(torch_model.spec)}
    assert canonical_layers == torch_layers
    assert len(torch_state) == len(keras_paths) == len(expected_tensors(torch_model.spec))


def test_keras_get_config_rebuilds_the_same_model():
    model = ktf.build_model("unet", in_channels=3, num_classes=2, base_channels=4, depth=2, padding="valid")
    clone = type(model).from_config(model.get_config())
    assert clone.spec == model.spec


def test_keras_model_works_inside_tf_function():
    import tensorflow as tf

    model = ktf.build_model("unet", in_channels=3, num_classes=2, base_channels=4, depth=2)
    run = tf.function(lambda x: model(x, training=False),
                      input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    assert tuple(run(np.zeros((2, 8, 8, 3), np.float32)).shape) == (2, 8, 8, 2)


def test_keras_models_train_with_fit():
    from segmentation_tf.losses import CrossEntropyLoss

    model = ktf.build_model("unet", in_channels=3, num_classes=2, base_channels=4, depth=2)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=CrossEntropyLoss(ignore_index=255))
    x = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    y = (x[..., 0] > 0.5).astype("int32")
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
