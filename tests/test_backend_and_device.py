"""segmentation_tf makes sure Keras runs on TensorFlow; device selection fails clearly."""

import os
import subprocess
import sys

import pytest


def _python(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, env=full_env)


START_UP_NOISE = ("cuInit", "oneDNN custom operations", "Could not find cuda drivers", "absl::InitializeLog",
                  "cpu_feature_guard", "rebuild TensorFlow")


def test_other_backend_in_environment_is_overridden_with_a_warning_and_start_up_is_quiet():
    """The override warning (a real one) shows; TensorFlow's start-up log lines, through a first op, do not."""
    code = ("import segmentation_tf, keras; import tensorflow as tf; tf.constant(1.0) + 1.0; "
            "print(keras.backend.backend()); import sys; print('own line', file=sys.stderr)")
    result = _python(code, KERAS_BACKEND="jax")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("tensorflow")
    assert "KERAS_BACKEND='jax' overridden" in result.stderr and "own line" in result.stderr
    assert not [line for line in result.stderr.splitlines() if any(noise in line for noise in START_UP_NOISE)], \
        result.stderr


def test_cli_help_is_quiet():
    result = subprocess.run([sys.executable, "-m", "segparity.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "segparity" in result.stdout and result.stderr == ""


def test_keras_already_imported_with_other_backend_is_a_clear_error():
    result = _python("import keras\nimport segmentation_tf", KERAS_BACKEND="torch")
    assert result.returncode != 0
    assert "needs Keras 3 on the TensorFlow backend" in result.stderr
    assert "'torch' backend" in result.stderr


@pytest.mark.parametrize("module", ["segmentation_torch.device", "segmentation_tf.device"])
def test_device_errors(module):
    import importlib

    device = importlib.import_module(module)
    with pytest.raises(ValueError, match="device must be one of cpu, cuda, got 'tpu'"):
        device.resolve_device("tpu")
    assert "cpu" in str(device.resolve_device("cpu")).lower()


def test_cuda_request_without_gpu_is_clear():
    import tensorflow as tf
    import torch

    from segmentation_tf.device import resolve_device as tf_device
    from segmentation_torch.device import resolve_device as torch_device

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA device"):
            torch_device("cuda")
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(ValueError, match="TensorFlow sees no GPU"):
            tf_device("cuda")


@pytest.mark.parametrize("module", ["segmentation_torch.device", "segmentation_tf.device"])
def test_tf32_switch_is_reported(module):
    import importlib

    device = importlib.import_module(module)
    device.set_tf32(False)
    assert "False" in device.tf32_state()
    device.set_tf32(True)
    assert "True" in device.tf32_state()
    device.set_tf32(False)
