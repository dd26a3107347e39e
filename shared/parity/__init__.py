"""The drivers: the modules that run both frameworks (they load ``segmentation_torch`` and ``segmentation_tf``
by name). The parity report's suite (``suite``), the layer diff and the harness for your own model pairs
(``layerdiff``), the pytest plugin (``pytest_plugin``), weight conversion between the frameworks' files
(``convert``), ``compare-train`` (``compare_train``), the environment a report names (``machine``) and the
report's tables (``report``). No framework package imports anything here (``tests/test_layout_rules.py``).
"""
