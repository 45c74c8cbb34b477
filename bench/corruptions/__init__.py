"""Common corruptions, CIFAR-10-C style (Hendrycks & Dietterich, ICLR 2019).

``corrupt(x, name, severity, generator)`` applies one of the 15 benchmark corruptions
(``CORRUPTION_NAMES``, in the benchmark's order) to a batch on any device, in batched torch
with all randomness from ``generator``; ``CORRUPTIONS`` names them (``describe`` gives a
line on each). ``load_cifar_c`` reads the released pre-generated files instead.

The severity constants are those of the authors' CIFAR-10-C generator (``make_cifar_c.py``),
with spatial lengths rescaled to the image size (``bench.corruptions.filters``). Where we
deviate: frost uses a procedural texture in place of the six photographs; JPEG is a torch
approximation of libjpeg; glass blur scrambles pixels with a batched gather instead of
sequential swaps; motion blur reads its taps bilinearly instead of rounding them; zoom blur
magnifies about the exact centre; borders are edge-replicated; nothing is rounded to 8 bits
between steps. Importing this package registers every corruption.
"""
from bench.corruptions import blur, digital, noise, weather  # noqa: F401  (registration side effect)
from bench.corruptions.base import CORRUPTION_NAMES, CORRUPTIONS, SEVERITIES, corrupt
from bench.corruptions.files import EXTRA_CORRUPTIONS, load_cifar_c

__all__ = ["CORRUPTIONS", "CORRUPTION_NAMES", "EXTRA_CORRUPTIONS", "SEVERITIES", "corrupt",
           "load_cifar_c"]
