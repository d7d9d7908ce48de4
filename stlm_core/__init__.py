"""stlm_core: a runnable reproducibility study of STLM and the CLIP-SAM cascaded-prompt method.

Subpackages: ``data`` (dataset readers, synthetic data, downloads), ``metrics`` (anomaly metrics),
``stlm`` (the STLM model), ``clipsam`` (the zero-shot CLIP-SAM cascade). ``cli`` is the ``stlm`` command.
"""

__version__ = "0.1.0"
