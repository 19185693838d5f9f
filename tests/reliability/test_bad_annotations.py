"""Malformed annotations and keypoints outside the image: errors name the file and line (or key)."""

from __future__ import annotations

import pytest

from landmark_study.data.real import PARSERS, AnnotationError, OutOfImageWarning, parse
from test_parsers import _celeba, _coco, _cub

def test_coco_errors_name_file_and_location(tmp_path):
    _coco(tmp_path / "k.json", [{"id": 9, "image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1],
                                 "keypoints": [1, 2, 2, 3]}])
    with pytest.raises(AnnotationError, match=r"k\.json, annotations\[0\] \(id 9\)\.keypoints: expected 9"):
        PARSERS["coco"](tmp_path, annotations={"t": "k.json"}, image_dirs={"t": "."})
    (tmp_path / "broken.json").write_text('{"images": [],\n "annotations": [,]}')
    with pytest.raises(AnnotationError, match=r"broken\.json, line 2: malformed JSON"):
        PARSERS["coco"](tmp_path, annotations={"t": "broken.json"}, image_dirs={"t": "."})


def test_keypoints_outside_image_warn_or_raise(tmp_path):
    anns = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "keypoints": [39.4, 49.4, 2, 40, 10, 2,
                                                                                       3, -0.6, 2]}]
    _coco(tmp_path / "k.json", anns)
    opts = {"annotations": {"t": "k.json"}, "image_dirs": {"t": "."}}
    with pytest.warns(OutOfImageWarning, match=r"keypoint\(s\) \[1, 2\]"):
        recs = parse("coco", tmp_path, opts)
    assert recs[0].visibility.tolist() == [1, 0, 0]  # x=39.4 < 39.5 is inside a 40-wide image
    with pytest.raises(AnnotationError, match=r"k\.json.*outside the 40x50 image"):
        parse("coco", tmp_path, opts, out_of_image="error")


def test_cub_malformed_line_names_file_and_line(tmp_path):
    _cub(tmp_path, bad_line="2 3 12.5 abc 1")
    with pytest.raises(AnnotationError, match=r"part_locs\.txt, line 18: expected a number, got 'abc'"):
        PARSERS["cub"](tmp_path)
    (tmp_path / "CUB_200_2011").rename(tmp_path / "old")
    _cub(tmp_path, bad_line="2 3 12.5")
    with pytest.raises(AnnotationError, match=r"part_locs\.txt, line 18: expected 'image_id part_id x y visible'"):
        PARSERS["cub"](tmp_path)


def test_celeba_malformed_line(tmp_path):
    _celeba(tmp_path, [f"{i:06d}.jpg" for i in range(1, 7)], bad="000002.jpg 69 109 106")
    with pytest.raises(AnnotationError, match=r"list_landmarks_align_celeba\.txt, line 4: expected a file name and "
                                              r"10 numbers"):
        PARSERS["celeba"](tmp_path, landmarks="celeb/Anno/list_landmarks_align_celeba.txt", partition=None)
