"""Backbones with torchvision's definitions; every Keras layer is named after torchvision's module path
(``layer1.0.conv1``), so canonical weights need no renaming table. Twins of ``segmentation_torch.backbones``."""
