"""The one place that imports ``mobile_sam`` (package ``mobilesam-mirror``).

``mobile_sam`` registers its TinyViT builders into timm's model registry on import and warns
"Overwriting tiny_vit_... in registry"; importing it once, here, with that warning silenced keeps the
rest of the code base free of the side effect. Everything STLM needs from the package is re-exported.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # timm deprecation + registry-overwrite warnings of the package import
    import mobile_sam
    from mobile_sam.modeling import MaskDecoder, PromptEncoder, TinyViT, TwoWayTransformer

sam_model_registry = mobile_sam.sam_model_registry

__all__ = ["MaskDecoder", "PromptEncoder", "TinyViT", "TwoWayTransformer", "sam_model_registry"]
