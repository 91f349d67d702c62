"""Sweeps of mini_emo config variants on dev: dev_sweep (train and score them), sweep_means (means over
seeds), extra_dev (a larger dev set); dev_sweep_gpu.sh runs dev_sweep on a bare GPU machine."""
