"""Baseline anomaly detectors run on the same data and metrics as STLM (PatchCore)."""
