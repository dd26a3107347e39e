"""The canonical weights: the layout both frameworks map their tensors to (``layout``) and the
safetensors checkpoint both read and write (``checkpoint``). Framework-neutral.
"""
