"""Deployment on a CPU: finished runs exported to ONNX / OpenVINO (fp32 and int8) and run without torch.

- :mod:`~stlm_core.deploy.graphs`: what an exported file computes, per method (torch modules);
- :mod:`~stlm_core.deploy.export`: ``stlm export`` (files and sidecars, int8 quantisation);
- :mod:`~stlm_core.deploy.runtime`: ``stlm predict`` (onnxruntime or OpenVINO, no torch).
"""
