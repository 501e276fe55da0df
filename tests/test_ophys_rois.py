"""ROI post-processing: aspect-ratio drop, binarization, exclusion labels, morphology (docs/methods.md)."""

from types import SimpleNamespace

import numpy as np
import pytest

from brainobs.populate.ophys.rois import MotionBorder, RoiRecord, postprocess_rois

SHAPE = (64, 64)
NO_BORDER = MotionBorder()


def rect(y0: int, x0: int, height: int, width: int, weight: float = 1.0) -> dict:
    yy, xx = np.mgrid[y0 : y0 + height, x0 : x0 + width]
    return {"ypix": yy.ravel(), "xpix": xx.ravel(), "lam": np.full(yy.size, weight)}


def with_pixel(roi: dict, y: int, x: int) -> dict:
    return {
        "ypix": np.append(roi["ypix"], y),
        "xpix": np.append(roi["xpix"], x),
        "lam": np.append(roi["lam"], roi["lam"][0]),
    }


def test_small_size_boundary_50_and_51_pixels():
    fifty = rect(20, 20, 5, 10)  # exactly 50 binary pixels
    fifty_one = with_pixel(rect(40, 20, 5, 10), 45, 25)  # one more, below the rectangle
    result = postprocess_rois([fifty, fifty_one], SHAPE, NO_BORDER)
    first, second = result.rois
    assert first.exclusion_labels == ("small_size",)
    assert not first.valid_roi
    assert second.exclusion_labels == ()
    assert second.valid_roi


def test_aspect_ratio_boundary_drops_at_0_2_and_keeps_above():
    exactly = rect(5, 5, 5, 25)  # min(h/w, w/h) = 0.2 -> dropped
    tall = rect(5, 40, 25, 5)  # 0.2 the other way -> dropped
    above = rect(30, 5, 5, 24)  # 5/24 = 0.208 -> kept
    result = postprocess_rois([exactly, tall, above], SHAPE, NO_BORDER)
    assert result.dropped == {0: "aspect_ratio", 1: "aspect_ratio"}
    assert [r.source_index for r in result.rois] == [2]
    assert result.rois[0].roi_index == 0


def test_binarize_keeps_weights_at_or_above_10th_percentile():
    roi = rect(10, 10, 10, 10)
    roi["lam"] = np.arange(100, dtype=float) + 1.0  # 10th percentile = 10.9 -> weights 1..10 dropped
    (record,) = postprocess_rois([roi], SHAPE, NO_BORDER).rois
    # the dropped weights are the first row of the square: the mask keeps rows 11..19, cleaned
    assert record.y == 11
    assert record.height == 9
    assert record.npix == 90 - 4  # opening with the radius-1 disk trims the four corners


def test_motion_border_label_follows_insets():
    border = MotionBorder(right=2.5, left=4.0, down=1.2, up=3.0)
    # valid region: rows ceil(1.2)=2 .. floor(64-3)-1=60, cols ceil(2.5)=3 .. floor(64-4)-1=59
    inside = rect(2, 3, 8, 8)
    touching_left = rect(20, 2, 8, 8)
    inside_right = rect(20, 52, 8, 8)  # last column 59
    touching_right = rect(30, 53, 8, 8)  # last column 60
    touching_top = rect(1, 20, 8, 8)
    touching_bottom = rect(54, 20, 8, 8)  # last row 61
    result = postprocess_rois(
        [inside, touching_left, inside_right, touching_right, touching_top, touching_bottom], SHAPE, border
    )
    labels = [r.exclusion_labels for r in result.rois]
    assert labels == [(), ("motion_border",), (), ("motion_border",), ("motion_border",), ("motion_border",)]


def test_both_labels_and_mapping_border():
    small_at_edge = rect(0, 0, 6, 6)
    (record,) = postprocess_rois([small_at_edge], SHAPE, {"right": 1, "left": 0, "down": 0, "up": 0}).rois
    assert record.exclusion_labels == ("motion_border", "small_size")


def test_morphology_removes_spurs_and_drops_vanished_rois():
    with_spur = with_pixel(rect(10, 10, 8, 8), 9, 30)  # isolated pixel far right (bbox 9x21, ratio 0.43)
    scattered = {"ypix": np.array([30, 30, 34, 34]), "xpix": np.array([30, 34, 30, 34]), "lam": np.ones(4)}
    result = postprocess_rois([with_spur, scattered], SHAPE, NO_BORDER)
    assert result.dropped == {1: "vanished"}
    (record,) = result.rois
    assert record.x == 10 and record.width == 8 and record.y == 10 and record.height == 8
    assert record.npix == 64 - 4
    assert record.centroid == pytest.approx((13.5, 13.5))


def test_record_masks_are_consistent():
    roi = rect(5, 7, 6, 9)
    (record,) = postprocess_rois([roi], SHAPE, NO_BORDER).rois
    full = record.full_mask()
    assert full.shape == SHAPE
    assert full.sum() == record.npix
    crop = full[record.y : record.y + record.height, record.x : record.x + record.width]
    np.testing.assert_array_equal(crop, record.mask)
    np.testing.assert_array_equal(np.flatnonzero(full), record.linear_index)


def test_bad_input_is_refused_with_the_roi_named():
    with pytest.raises(ValueError, match="ROI 1: pixels outside"):
        postprocess_rois([rect(0, 0, 8, 8), rect(60, 60, 8, 8)], SHAPE, NO_BORDER)
    with pytest.raises(ValueError, match="ROI 0: missing 'lam'"):
        postprocess_rois([{"ypix": [1], "xpix": [1]}], SHAPE, NO_BORDER)
    with pytest.raises(ValueError, match="motion border"):
        postprocess_rois([rect(0, 0, 8, 8)], SHAPE, {"right": 1})


def test_motion_border_coerces_registration_style_objects():
    border = MotionBorder.coerce(SimpleNamespace(left=1.0, right=2.0, up=3.0, down=4.0))
    assert border == MotionBorder(right=2.0, left=1.0, down=4.0, up=3.0)
    mask = border.valid_mask((10, 10))
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 6, 2, 8)


def test_empty_roi_is_dropped():
    result = postprocess_rois([{"ypix": [], "xpix": [], "lam": []}], SHAPE, NO_BORDER)
    assert result.rois == [] and result.dropped == {0: "empty"}


def test_record_dataclass_defaults():
    record = RoiRecord(0, 0, np.array([1, 1]), np.array([2, 3]), (4, 5))
    assert record.valid_roi and record.npix == 2 and record.width == 2 and record.height == 1


def test_cleanup_equals_full_frame_closing_then_opening():
    from skimage.morphology import closing, disk, opening

    rng = np.random.default_rng(5)
    for y0, x0 in [(0, 0), (50, 52), (0, 40), (30, 30)]:
        blob = rng.random((14, 12)) < 0.7
        ys, xs = np.nonzero(blob)
        roi = {"ypix": ys + y0, "xpix": xs + x0, "lam": np.ones(ys.size)}
        full = np.zeros(SHAPE, dtype=bool)
        full[roi["ypix"], roi["xpix"]] = True
        expected = opening(closing(full, disk(1), mode="ignore"), disk(1), mode="ignore")
        result = postprocess_rois([roi], SHAPE, NO_BORDER)
        got = result.rois[0].full_mask() if result.rois else np.zeros(SHAPE, dtype=bool)
        np.testing.assert_array_equal(got, expected)
