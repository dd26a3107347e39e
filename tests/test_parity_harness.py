"""The parity harness for users' own models (docs/parity-harness.md; its worked example runs in
tests/test_docs.py): the pytest fixtures and plugin work, and bad name maps are clear errors."""

import re
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import torch
from torch import nn

from segparity.parity.layerdiff import ParityError, assert_parity, diff_models, transfer_weights

class _Torch(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


def _keras(epsilon: float) -> keras.Model:
    x = inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", name="c")(x)
    x = keras.layers.BatchNormalization(epsilon=epsilon, momentum=0.9, name="b")(x)
    return keras.Model(inputs, keras.layers.ReLU()(x))


NAMES = {"conv": "c", "bn": "b"}
IMAGES = np.random.default_rng(1).standard_normal((4, 2, 6, 6)).astype(np.float32)


def _pair(epsilon: float):
    torch.manual_seed(0)
    model = _Torch()
    with torch.no_grad():
        model.bn.running_var.fill_(2e-3)  # small variances make the epsilon visible
    twin = _keras(epsilon)
    assert transfer_weights(model, twin, NAMES) == ["conv", "bn"]
    return model, twin


def test_fixture_passes_a_faithful_pair_and_names_the_layer_of_an_unfaithful_one(assert_parity, parity_tolerance):
    assert parity_tolerance == (1e-4, 1e-5)  # no option or ini value given: segparity's defaults
    model, twin = _pair(epsilon=1e-5)
    report = assert_parity(model.eval(), twin, IMAGES, name_map=NAMES)
    assert report.passed and [row.torch_path for row in report.rows] == ["conv", "bn"]
    training = assert_parity(model, twin, IMAGES, name_map=NAMES, training=True)
    assert training.rows[1].isolated.max_abs < 1e-5
    model, naive = _pair(epsilon=1e-3)  # Keras's default epsilon
    with pytest.raises(ParityError, match=r"isolated: bn -> b") as caught:
        assert_parity(model.eval(), naive, IMAGES, name_map=NAMES)
    assert caught.value.report.rows[0].isolated.passed  # the conv before it is fine


def test_probes_leave_weights_statistics_and_modes_as_they_were():
    model, twin = _pair(epsilon=1e-5)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    keras_before = [keras.ops.convert_to_numpy(v) for v in twin.variables]
    diff_models(model, twin, IMAGES, name_map=NAMES, training=True)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(np.array_equal(a, keras.ops.convert_to_numpy(v)) for a, v in zip(keras_before, twin.variables))


def test_weights_move_back_from_keras_to_torch():
    model, twin = _pair(epsilon=1e-5)
    twin.get_layer("c").kernel.assign(np.full((3, 3, 2, 3), 0.25, np.float32))
    transfer_weights(model, twin, NAMES, to="torch")
    assert torch.all(model.conv.weight == 0.25)


def test_plain_functions_compare_outputs_in_torch_layout():
    report = assert_parity(lambda x: torch.flip(x, dims=[1]), lambda x: x[..., ::-1], IMAGES)
    assert report.rows == [] and report.output.max_abs == 0.0
    with pytest.raises(ParityError, match="output max_abs"):
        assert_parity(lambda x: x * 2, lambda x: x * 2.001, IMAGES)


def test_bad_name_maps_and_weights_name_the_layer():
    model, twin = _pair(epsilon=1e-5)
    with pytest.raises(KeyError, match="torch model _Torch has no layer 'convv'"):
        diff_models(model, twin, IMAGES, name_map={"convv": "c"})
    with pytest.raises(KeyError, match="has no layer 'cc'"):
        diff_models(model, twin, IMAGES, name_map={"conv": "cc"})
    with pytest.raises(ValueError, match="names the Keras layer\\(s\\) 'c' for more than one torch layer"):
        diff_models(model, twin, IMAGES, name_map={"conv": "c", "bn": "c"})
    with pytest.raises(ValueError, match="layer 'b' is a batch_norm, the tensors are of a conv2d"):
        transfer_weights(model, twin, {"conv": "b"}, ignore=("bn", "c"))
    with pytest.raises(TypeError, match=r"layer '0' \(Conv1d\) has weights but no canonical layout"):
        transfer_weights(nn.Sequential(nn.Conv1d(2, 3, 1)), twin, {"0": "c"}, ignore=("b",))
    small = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(5, 3, name="c")])
    with pytest.raises(ValueError, match=r"layer 'c' tensor 'weight': Keras expects \(3, 3, 2, 5\)"):
        transfer_weights(model, small, {"conv": "c"}, ignore=("bn",))


def test_bad_arguments_to_assert_parity_are_named():
    model, twin = _pair(epsilon=1e-5)
    with pytest.raises(TypeError, match="tf_fn must be a model or a callable, got NoneType"):
        assert_parity(model, None, IMAGES)
    with pytest.raises(ValueError, match="atol must be a number >= 0, got -1"):
        assert_parity(model, twin, IMAGES, atol=-1)
    with pytest.raises(TypeError, match="inputs must be a non-empty numpy array in torch's layout"):
        assert_parity(model, twin, None)
    with pytest.raises(TypeError, match="name_map must be a dict"):
        assert_parity(model, twin, IMAGES, name_map=["conv", "c"])


def test_a_missing_name_map_or_a_layer_it_leaves_out_is_named():
    """``transfer_weights(t, k, None)`` is a TypeError naming ``name_map`` (not an AttributeError from inside);
    a layer with weights that the map leaves out stops the copy, named, before anything moves; in a report it
    is named in the verdict and the diagnosis instead of an unexplained "isolated: none"."""
    model, twin = _pair(epsilon=1e-5)
    with pytest.raises(TypeError, match=r"name_map must be a dict \{torch attribute path: Keras layer name\}, got NoneType"):
        transfer_weights(model, twin, None)
    before = twin.get_layer("c").get_weights()[0].copy()
    with pytest.raises(ValueError, match="name_map leaves out layers with weights: torch 'bn', Keras 'b'"):
        transfer_weights(model, twin, {"conv": "c"})
    np.testing.assert_array_equal(twin.get_layer("c").get_weights()[0], before)  # nothing moved
    assert transfer_weights(model, twin, {"conv": "c"}, ignore=("bn", "b")) == ["conv"]
    with torch.no_grad():
        model.bn.running_mean += 1.0  # a difference only in the layer left out of the map
    report = diff_models(model, twin, IMAGES, name_map={"conv": "c"})
    assert not report.passed and report.unmapped == ("torch 'bn'", "Keras 'b'")
    assert "not compared (layers with weights outside the name map): torch 'bn', Keras 'b'" in report.verdict()
    assert "torch 'bn', Keras 'b'; map them" in report.diagnosis()



USER_TESTS = """
import keras
import numpy as np
import torch
from torch import nn

from segparity.parity.layerdiff import transfer_weights


def test_unfaithful(assert_parity):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    x = inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="a")(x)
    twin = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="b")(keras.layers.ReLU()(x)))
    transfer_weights(model, twin, {"0": "a", "2": "b"})
    with torch.no_grad():
        model[2].bias += 1.0
    assert_parity(model, twin, np.ones((2, 3, 8, 8), np.float32), name_map={"0": "a", "2": "b"})
"""


def test_plugin_failure_shows_the_users_line_and_the_table_never_segparitys_source(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    failure = out[out.index("_ test_unfaithful _"):out.index("short test summary")]
    assert "assert_parity(model, twin, np.ones" in failure  # the user's own line
    assert re.search(r"^E +segparity\.parity\.layerdiff\.ParityError: torch and Keras disagree", failure, flags=re.M)
    assert failure.index("| # | layer") < failure.index("port error: 2 -> b")
    for library_line in ("def check(", "_assert_parity(", "def assert_parity(", "diff_models(", "torch_fn =",
                         "def wrapper("):
        assert library_line not in failure


def test_library_warnings_inside_segparity_calls_are_dropped_and_the_users_are_kept():
    """Keras and numpy deprecations raised while segparity probes a pair are not the user's; a warning from
    the user's own function, called from inside ``assert_parity``, is passed on unchanged."""
    model, twin = _pair(epsilon=1e-5)

    def users_keras_function(x):
        warnings.warn("from the user's function", UserWarning)
        return twin(x, training=False)

    with warnings.catch_warnings(record=True) as unfiltered:
        warnings.simplefilter("always")
        diff_models.__wrapped__(model, twin, IMAGES, name_map=NAMES)
    assert any(w.category is DeprecationWarning for w in unfiltered)  # the probes do meet library warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        transfer_weights(model, twin, NAMES)
        diff_models(model, twin, IMAGES, name_map=NAMES)
        assert_parity(model.eval(), users_keras_function, IMAGES)
    assert [(w.category, str(w.message), Path(w.filename).name) for w in caught] == [
        (UserWarning, "from the user's function", "test_parity_harness.py")]


def test_a_report_draws_where_two_models_part(tmp_path):
    """``LayerReport.plot`` (and ``segparity diff --png``) draw the per-layer errors; a planted divergence, Keras's
    default BatchNorm epsilon, is the layer marked, and a faithful pair marks none."""
    from segparity.parity.layerplot import layer_report_figure

    model, naive = _pair(epsilon=1e-3)
    report = diff_models(model.eval(), naive, IMAGES, name_map=NAMES)
    path = report.plot(tmp_path / "diff.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure = layer_report_figure(report)
    axes = figure.axes[0]
    assert [text.get_text() for text in axes.texts] == ["port error starts: #2 bn"]
    assert axes.get_yscale() == "log" and any(line.get_ydata()[0] == report.rtol for line in axes.lines)
    faithful = diff_models(*(m.eval() if isinstance(m, nn.Module) else m for m in _pair(epsilon=1e-5)), IMAGES,
                           name_map=NAMES)
    assert list(layer_report_figure(faithful).axes[0].texts) == []


def test_padding_in_a_separate_layer_is_not_named_as_the_port_error():
    """``keras.applications`` pads in a ``ZeroPadding2D`` of its own before a valid conv: fed torch's unpadded input,
    that conv alone gives another shape (isolated: inf), but in its model it agrees. The diagnosis starts at the
    first layer wrong both ways (here the BatchNorm with Keras's default epsilon) and names the conv apart; so does
    the picture; torch-side layers without a bias receive none, and a Keras conv bias is set to zero."""
    from segparity.parity.layerplot import layer_report_figure

    torch.manual_seed(0)
    model = _Torch()
    model.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    with torch.no_grad():
        model.bn.running_var.fill_(2e-3)
    x = inputs = keras.Input((6, 6, 2))
    x = keras.layers.ZeroPadding2D(1, name="pad")(x)
    x = keras.layers.Conv2D(3, 3, padding="valid", name="c")(x)  # use_bias=True: set to zero by transfer_weights
    x = keras.layers.BatchNormalization(epsilon=1e-3, name="b")(x)
    twin = keras.Model(inputs, keras.layers.ReLU()(x))
    twin.get_layer("c").bias.assign(np.ones(3, np.float32))
    assert transfer_weights(model, twin, NAMES) == ["conv", "bn"]
    assert not keras.ops.convert_to_numpy(twin.get_layer("c").bias).any()
    report = diff_models(model.eval(), twin, IMAGES, name_map=NAMES)
    conv, bn = report.rows
    assert not conv.isolated.passed and conv.end_to_end.passed and report.first_port_error() is bn
    assert report.diagnosis().startswith("port error: bn -> b gives a different output on torch's own input")
    assert "conv -> c gives another shape only isolated and agrees end to end" in report.diagnosis()
    assert [t.get_text() for t in layer_report_figure(report).axes[0].texts] == ["port error starts: #2 bn"]
    twin.get_layer("c").bias.assign(np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"layer 'conv' has no bias, and the bias given is not zero \(max abs 1\)"):
        transfer_weights(model, twin, NAMES, to="torch")
