"""Framework-neutral core of segparity.

Everything here is plain Python and numpy: architecture specs, spatial-size rules, the canonical
weight layout and checkpoint format, input validation messages, numpy reference maths, parity
comparison and report writing. No module in this package imports torch, tensorflow or keras
(``tests/test_layout_rules.py`` checks this). The command line (``shared.cli``) loads the two
framework packages by name, through their twin ``harness`` modules, only when a command needs them.

Array convention in ``shared``: activations are ``(N, C, H, W)`` (channels first), label maps
``(N, H, W)`` integers, weights in the canonical layout of ``shared.layout``.
"""

__version__ = "0.1.0"
