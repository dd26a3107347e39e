"""How two results are compared: the tolerance rule (``tolerance``: ``compare``, ``assert_close``, ``RTOL``,
``ATOL``), the parity trace's quantities and float32 floors (``trace``), ReLU/max-pool kink margins (``kinks``)
and a probe's record of one layer call (``records``). Framework-neutral: both framework packages use it.
"""
