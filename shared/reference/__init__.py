"""The numpy definitions both frameworks are checked against: losses, metrics, max-unpooling, the
discriminative (instance) loss, panoptic clustering and scoring, and a numpy U-Net forward pass.
Framework-neutral; ``(N, C, H, W)`` activations, ``(N, H, W)`` integer labels.
"""
