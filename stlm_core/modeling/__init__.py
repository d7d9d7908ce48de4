"""Reusable network building blocks (backbones and feature extractors) shared by the methods."""
