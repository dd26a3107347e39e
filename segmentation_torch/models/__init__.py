"""Models under torchvision's names and definitions (PyTorch side); twins in ``segmentation_tf.models``."""
