"""CLIP-SAM cascaded prompts, zero-shot (arXiv 2510.11028; spec ``../shared/specs/clipsam.md``).

Modules: ``config`` (profiles and every open choice), ``prompts`` (text ensemble), ``clip_localiser`` (Map_a),
``adapters`` (APRIL-GAN adapters), ``sam_backend`` (frozen SAM), ``ppg`` (point prompts), ``cps`` (cascade),
``fusion`` (final map, image score), ``pipeline`` (all of it per image / dataset), ``bench`` (stage timings),
``cli`` (``stlm zeroshot``, ``stlm zeroshot-adapters``). Only ``config`` and ``cli`` are light to import.
"""
