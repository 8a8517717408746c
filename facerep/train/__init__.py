"""Pretraining: config, data, augmentation, the loop, checkpoints, distributed runs, observation."""
