"""The repository's benchmark and research tools; not part of the installed plugin.

Run them from the repository (its root on PYTHONPATH), e.g. ``python -m benchmarks.mini_emo.run``.
"""
