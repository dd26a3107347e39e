"""U-Net really learns the synthetic shapes in both frameworks: a small-budget version of the README's
figure (there: 64x64, 30 epochs, val IoU >= 0.85; here: 32x32, 12 epochs, about 25 s per framework)."""

import pytest

import segmentation_tf.train as tf_train
import segmentation_torch.train as torch_train
from segparity.training.config import make_config

BAR = 0.6  # validation mean IoU over 3 classes; chance level (all background) is about 0.25


@pytest.mark.slow
@pytest.mark.parametrize("framework, trainer", [("torch", torch_train), ("tf", tf_train)])
def test_unet_segments_synthetic_shapes(tmp_path, framework, trainer):
    config = make_config(framework, "unet", model_options={"base_channels": 16, "depth": 3}, image_size=32,
                         lr=3e-3, epochs=12)
    rows = trainer.train(config, tmp_path, progress=False)
    assert rows[0]["val_iou"] < 0.5  # it starts near chance...
    assert rows[-1]["val_iou"] >= BAR, [round(r["val_iou"], 3) for r in rows]  # ...and learns
    assert rows[-1]["loss"] < 0.6 * rows[0]["loss"]
