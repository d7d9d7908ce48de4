"""CPS cascade (what is passed between stages), fusion rules and the empty-S_a rule."""

from __future__ import annotations

import numpy as np
import pytest

from stlm_core.clipsam.cps import mask_box, run_cascade
from stlm_core.clipsam.fusion import fuse, image_score


class RecordingPredictor:
    """Stands in for ``SamPredictor``: records every call; returns logits with a square positive region that
    shrinks each call, and non-binary low-res logits unique to each call."""

    def __init__(self, shape=(100, 120), low=(32, 32), n_out=1):
        self.shape, self.low, self.calls, self.n_out = shape, low, [], n_out

    def predict(self, point_coords, point_labels, box=None, mask_input=None, multimask_output=True,
                return_logits=False):
        i = len(self.calls)
        self.calls.append(dict(points=point_coords, labels=point_labels, box=box, mask_input=mask_input,
                               multimask=multimask_output, return_logits=return_logits))
        n = 3 if multimask_output else 1
        masks = np.full((n, *self.shape), -5.0, np.float32)
        masks[:, 20 + 2 * i : 60 - i, 30 + i : 90 - 2 * i] = 3.0
        low = np.random.default_rng(i).normal(size=(n, *self.low)).astype(np.float32)
        iou = np.array([0.2, 0.9, 0.5][:n], np.float32)
        return masks, iou, low


def test_cascade_passes_previous_lowres_logits_and_box():
    pred = RecordingPredictor()
    pts = np.array([[50, 40], [10, 10]], np.float32)
    labels = np.array([1, 0])
    result = run_cascade(pred, pts, labels, stages=3)
    assert len(pred.calls) == 3 and len(result.logits) == 3
    first, second, third = pred.calls
    # stage 1: points only
    assert first["mask_input"] is None and first["box"] is None
    # stage 2: the stage-1 low-res LOGITS (real-valued, not a binary mask), shape (1, h, w)
    assert second["mask_input"].shape == (1, 32, 32)
    np.testing.assert_array_equal(second["mask_input"][0], result.low_res[0])
    assert len(np.unique(second["mask_input"])) > 2 and second["mask_input"].min() < 0 < second["mask_input"].max()
    assert second["box"] is None
    # stage 3: stage-2 logits + a box containing the stage-2 mask
    np.testing.assert_array_equal(third["mask_input"][0], result.low_res[1])
    x0, y0, x1, y1 = third["box"]
    ys, xs = np.nonzero(result.logits[1] > 0)
    assert x0 <= xs.min() and y0 <= ys.min() and x1 >= xs.max() and y1 >= ys.max()
    assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max(), ys.max())  # tight
    for call in pred.calls:                    # same points every stage, logits requested
        np.testing.assert_array_equal(call["points"], pts)
        assert call["return_logits"] and not call["multimask"]
    assert result.final_logits.shape == pred.shape


def test_cascade_multimask_keeps_best_iou_and_fewer_stages():
    pred = RecordingPredictor()
    result = run_cascade(pred, np.array([[5, 5]]), np.array([1]), stages=2, multimask=True)
    assert len(pred.calls) == 2 and result.iou == [pytest.approx(0.9)] * 2
    assert pred.calls[1]["mask_input"].shape == (1, 32, 32)
    with pytest.raises(ValueError):
        run_cascade(pred, np.array([[5, 5]]), np.array([1]), stages=4)


def test_mask_box_empty_and_tight():
    assert mask_box(np.zeros((4, 4), bool)) is None
    m = np.zeros((10, 10), bool)
    m[2:5, 3:8] = True
    np.testing.assert_array_equal(mask_box(m), [3, 2, 7, 4])


def test_fusion_rules():
    m = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    logits = np.where(m > 0.5, 10.0, -10.0).astype(np.float32)
    d = fuse(m, logits, "default")
    np.testing.assert_allclose(d, 0.5 * m + 0.5 * m / (1 + np.exp(-logits)), rtol=1e-5)
    np.testing.assert_allclose(fuse(m, logits, "sam"), 1 / (1 + np.exp(-logits)), rtol=1e-5)
    np.testing.assert_allclose(fuse(m, logits, "additive"), m + (logits > 0))
    # empty S_a: SAM not called; the default rule is 0.5 * Map_a
    np.testing.assert_allclose(fuse(m, None, "default"), 0.5 * m)
    np.testing.assert_allclose(fuse(m, None, "sam"), 0 * m)
    np.testing.assert_allclose(fuse(m, None, "additive"), m)
    with pytest.raises(ValueError):
        fuse(m, None, "unknown")
    assert image_score(d, 0.3, "max") == pytest.approx(float(d.max()))
    assert image_score(d, 0.3, "clip_cls") == pytest.approx(0.3)


class EmptyFirstPredictor(RecordingPredictor):
    """Single-mask calls return an empty mask; multimask calls a non-empty one."""

    def predict(self, **kwargs):
        masks, iou, low = super().predict(**kwargs)
        if not kwargs["multimask_output"]:
            masks[:] = -5.0
        return masks, iou, low


def test_empty_single_mask_falls_back_to_best_of_three():
    pred = EmptyFirstPredictor()
    result = run_cascade(pred, np.array([[50, 40]]), np.array([1]), stages=1)
    assert [c["multimask"] for c in pred.calls] == [False, True]
    assert result.iou == [pytest.approx(0.9)] and (result.logits[0] > 0).any()
    pred = EmptyFirstPredictor()
    run_cascade(pred, np.array([[50, 40]]), np.array([1]), stages=1, fallback=False)
    assert len(pred.calls) == 1
