"""One file per architecture, framework-neutral: its spec, its layer table and its size rule.

``unet.py``, ``segnet.py``, ``fcn.py`` and ``deeplab.py`` here are the single source of truth for the
twin model files of the same names in ``segmentation_torch`` and ``segmentation_tf``: the spec holds
every option (with its default and a one-line comment), ``layer_table`` lists every layer with
weights in execution order (``segparity.weights.layout``), and ``output_size`` says which input sizes the
network takes. Each spec class offers the same methods:

- ``options()``: every constructor argument, in declaration order;
- ``layer_table()``: the ``segparity.weights.layout.LayerEntry`` list;
- ``output_size(size)``: output height (or width) for an input ``size``, ``None`` if not accepted;
- ``size_rule()`` and ``describe()``: words for error messages.
"""
