"""espnet-harmonifuse: HarmoniFuse (multi-task ASR + SER speech LM) as an ESPnet plugin."""

__version__ = "0.1.0"


def __getattr__(name):  # lazy: importing the package must not import torch/espnet
    if name == "HarmoniFuse":
        from espnet_harmonifuse.api import HarmoniFuse

        return HarmoniFuse
    raise AttributeError(name)
