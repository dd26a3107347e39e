"""Models under torchvision's names and definitions (Keras side); every layer named after torchvision's module
path. Twins of ``segmentation_torch.models``."""
