"""segparity: the framework-neutral core of the library, and the drivers that run both frameworks.

This folder, ``shared/``, installs and imports as ``segparity``. Subpackages, one idea each
(docs/architecture.md): ``networks`` (specs, presets, sizes, FLOPs), ``weights`` (canonical layout and
checkpoint), ``reference`` (the numpy definitions both frameworks are checked against), ``comparison``
(the tolerance rule, traces, kink margins), ``data`` and ``training`` (plain Python and numpy), and
``parity``, the drivers: with ``cli`` the only modules that run torch or TensorFlow, loading
``segmentation_torch`` and ``segmentation_tf`` by name (``tests/test_layout_rules.py`` checks it).

Array convention here: activations are ``(N, C, H, W)`` (channels first), label maps ``(N, H, W)``
integers, weights in the canonical layout of ``segparity.weights.layout``.
"""

__version__ = "0.1.0"
