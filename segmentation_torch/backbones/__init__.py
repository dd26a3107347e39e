"""Backbones with torchvision's definitions and module paths (PyTorch side); twins in ``segmentation_tf.backbones``."""
