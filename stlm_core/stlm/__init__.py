"""STLM (arXiv 2402.19145): SAM-guided two-stream lightweight anomaly detection.

Modules, one job each (spec: ``specs/stlm.md``):

- :mod:`.config`          per-profile settings (``paper`` / ``cpu`` / ``smoke``) and ablation switches;
- :mod:`.mobilesam`       the single place that imports ``mobile_sam`` (it re-registers timm names);
- :mod:`.teacher`         frozen SAM teacher (encoder + its own prompt-free decoder features);
- :mod:`.students`        TinyViT student encoders with the MobileSAM neck;
- :mod:`.decoder`         SAM/MobileSAM mask decoder used without prompts as a two-level feature extractor;
- :mod:`.fa_head`         the feature-aggregation (FA) segmentation head (DeSTSeg's ``SegmentationNet``);
- :mod:`.model`           the inference model (students + shared decoder + FA) and the anomaly maps;
- :mod:`.pseudo_anomaly`  Perlin-mask pseudo-anomalies (DRAEM style) with DTD or procedural textures;
- :mod:`.train`, :mod:`.evaluate`, :mod:`.bench`, :mod:`.cli`.

Importing this package is light (no torch); import the submodules for the heavy parts.
"""
