"""Parsers of real annotation formats, on small fixture files written in those formats."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from landmark_study.data.manifests import load_manifest
from landmark_study.data.real import (PARSERS, AnnotationError, OutOfImageWarning, Record, RecordDataset, load_splits,
                                      parse)
from landmark_study.data.real.animals import read_cat
from landmark_study.data.real.body import load_numpy_pickle
from landmark_study.data.real.faces import read_pts, write_pts
from landmark_study.data.real.hands import read_hgr_points
from landmark_study.data.real.records import SplitCountWarning, select_split
from landmark_study.data.real.torch7 import T7FormatError, read_t7, write_t7_tensor
from landmark_study.data.sample import DatasetSpec


def _struct(**fields):
    """A 1x1 MATLAB struct for scipy.io.savemat."""
    a = np.empty((1, 1), dtype=[(k, object) for k in fields])
    for k, v in fields.items():
        a[0, 0][k] = v
    return a


def _struct_array(items):
    """A 1xN MATLAB struct array (all items share their keys)."""
    keys = list(items[0])
    a = np.empty((1, len(items)), dtype=[(k, object) for k in keys])
    for i, it in enumerate(items):
        for k in keys:
            a[0, i][k] = it[k]
    return a


def _image(path: Path, h: int, w: int, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))


# ----------------------------------------------------------------------------- LSP


def _lsp_fixture(root: Path, n_lsp: int = 4, n_lspet: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    lsp = np.zeros((3, 14, n_lsp))
    lsp[:2] = rng.uniform(5, 90, (2, 14, n_lsp))
    lsp[2, 3, 0] = 1  # joint 3 of image 1 is OCCLUDED (LSP convention)
    lspet = np.zeros((14, 3, n_lspet))
    lspet[:, :2] = rng.uniform(5, 90, (14, 2, n_lspet))
    lspet[:, 2] = 1
    lspet[5, 2, 1] = 0  # joint 5 of image 2 is NOT VISIBLE (LSP-extended convention)
    (root / "lsp").mkdir(parents=True)
    (root / "lspet").mkdir(parents=True)
    scipy.io.savemat(root / "lsp" / "joints.mat", {"joints": lsp})
    scipy.io.savemat(root / "lspet" / "joints.mat", {"joints": lspet})
    return lsp, lspet


def test_lsp_layouts_and_visibility_conventions(tmp_path):
    lsp, lspet = _lsp_fixture(tmp_path)
    recs = PARSERS["lsp"](tmp_path)
    a = [r for r in recs if r.meta["source"] == "lsp"]
    b = [r for r in recs if r.meta["source"] == "lspet"]
    assert len(a) == 4 and len(b) == 3
    np.testing.assert_allclose(a[0].keypoints, lsp[:2, :, 0].T, rtol=1e-6)
    np.testing.assert_allclose(b[1].keypoints, lspet[:, :2, 1], rtol=1e-6)
    # LSP: the flag marks occlusion; the joint is still annotated
    assert a[0].visibility[3] == 1 and a[0].meta["occluded"][3] == 1 and a[0].meta["occluded"].sum() == 1
    # LSP-extended: the flag marks visibility
    assert b[1].visibility[5] == 0 and b[1].visibility.sum() == 13
    assert a[1].image == tmp_path / "lsp/images/im0002.jpg"
    assert b[0].image == tmp_path / "lspet/images/im00001.jpg"
    strict = PARSERS["lsp"](tmp_path, occluded_as_visible=False)
    assert strict[0].visibility[3] == 0


def test_lsp_wrong_shape_names_file_and_key(tmp_path):
    (tmp_path / "lsp").mkdir()
    scipy.io.savemat(tmp_path / "lsp" / "joints.mat", {"joints": np.zeros((3, 13, 2))})
    with pytest.raises(AnnotationError, match=r"lsp/joints\.mat.*'joints'.*3x14xN"):
        PARSERS["lsp"](tmp_path, lspet_dir=None)
    scipy.io.savemat(tmp_path / "lsp" / "joints.mat", {"other": np.zeros(3)})
    with pytest.raises(AnnotationError, match=r"joints\.mat, key 'joints': missing"):
        PARSERS["lsp"](tmp_path, lspet_dir=None)


def test_lsp_through_the_manifest_protocol(tmp_path):
    _lsp_fixture(tmp_path, n_lsp=6, n_lspet=5)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        splits = load_splits("lsp", root=tmp_path)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [5, 6, 0]
    counts = [str(x.message) for x in w if issubclass(x.category, SplitCountWarning)]
    assert len(counts) == 3 and "moskvyak2021/train: selected 5 records, the paper reports 10000" in counts[0]


# ----------------------------------------------------------------------------- MPII


def _mpii_point(pid, x, y, vis):
    return {"id": pid, "x": float(x), "y": float(y), "is_visible": vis}


def test_mpii_mat_nested_structs(tmp_path):
    pts = _struct_array([_mpii_point(9, 50, 20, "1"), _mpii_point(8, 50, 30, "0"), _mpii_point(0, 40, 90, 1)])
    person = {"x1": 40.0, "y1": 10.0, "x2": 60.0, "y2": 35.0, "annopoints": _struct(point=pts),
              "scale": 0.5, "objpos": _struct(x=50.0, y=60.0)}
    no_points = {"x1": 1.0, "y1": 1.0, "x2": 2.0, "y2": 2.0, "annopoints": np.zeros((0, 0)),
                 "scale": 1.0, "objpos": _struct(x=5.0, y=5.0)}
    ann = _struct_array([
        {"image": _struct(name="a.jpg"), "annorect": _struct_array([person, no_points])},
        {"image": _struct(name="b.jpg"), "annorect": np.zeros((0, 0))},
    ])
    release = _struct(annolist=ann, img_train=np.array([[1, 0]]))
    (tmp_path / "ann").mkdir()
    scipy.io.savemat(tmp_path / "ann" / "m.mat", {"RELEASE": release})
    recs = parse("mpii", tmp_path, {"mat_file": "ann/m.mat"}, coordinate_offset=1, out_of_image="ignore")
    assert len(recs) == 1
    r = recs[0]
    assert r.image == tmp_path / "images" / "a.jpg"
    np.testing.assert_allclose(r.keypoints[9], [49, 19])  # MATLAB 1-based -> 0-based
    np.testing.assert_allclose(r.keypoints[0], [39, 89])
    assert r.visibility.tolist() == [1] + [0] * 7 + [1, 1] + [0] * 6
    assert r.meta["occluded"][8] == 1 and r.meta["occluded"][9] == 0
    np.testing.assert_allclose(r.meta["head_box"], [39, 9, 59, 34])
    np.testing.assert_allclose(r.bbox, [49 - 50, 59 - 50, 49 + 50, 59 + 50])  # 200 * scale square
    assert r.meta["img_train"] == 1 and r.meta["source_split"] == "train"


def test_mpii_json_with_head_boxes(tmp_path):
    joints = np.arange(32, dtype=float).reshape(16, 2) + 5
    vis = [1] * 16
    vis[3] = 0
    entries = [{"image": "x.jpg", "joints": joints.tolist(), "joints_vis": vis, "center": [20, 30], "scale": 1.0},
               {"image": "y.jpg", "joints": (-np.ones((16, 2))).tolist(), "joints_vis": [1] * 16,
                "center": [1, 1], "scale": 0.2}]
    (tmp_path / "annot").mkdir()
    (tmp_path / "annot" / "valid.json").write_text(json.dumps(entries))
    hb = np.zeros((2, 2, 2))
    hb[:, :, 0] = [[1, 2], [11, 22]]
    scipy.io.savemat(tmp_path / "annot" / "gt_valid.mat", {"headboxes_src": hb})
    recs = PARSERS["mpii"](tmp_path, json_files={"valid": "annot/valid.json"},
                           head_boxes={"valid": "annot/gt_valid.mat"})
    assert len(recs) == 2 and recs[0].visibility[3] == 0 and recs[0].visibility.sum() == 15
    assert recs[1].visibility.sum() == 0  # -1 marks missing joints
    np.testing.assert_allclose(recs[0].meta["head_box"], [1, 2, 11, 22])
    np.testing.assert_allclose(recs[0].bbox, [-80, -70, 120, 130])
    (tmp_path / "annot" / "bad.json").write_text(json.dumps([{"image": "x.jpg", "joints": [[0, 0]] * 15,
                                                              "joints_vis": [1] * 15, "center": [0, 0], "scale": 1}]))
    with pytest.raises(AnnotationError, match=r"bad\.json, entry \[0\]\.joints"):
        PARSERS["mpii"](tmp_path, json_files={"train": "annot/bad.json"})


# ----------------------------------------------------------------------------- COCO

_COCO_NAMES = ["a", "b", "c"]


def _coco(path: Path, anns, names=_COCO_NAMES):
    data = {"images": [{"id": 7, "file_name": "000007.jpg", "height": 50, "width": 40}],
            "annotations": anns, "categories": [{"id": 1, "name": "person", "keypoints": names}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def test_coco_instances_flags_and_boxes(tmp_path):
    anns = [
        {"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0, "bbox": [2, 3, 10, 20], "area": 150,
         "keypoints": [5, 6, 2, 7, 8, 1, 0, 0, 0]},
        {"id": 2, "image_id": 7, "category_id": 1, "iscrowd": 1, "bbox": [0, 0, 5, 5], "keypoints": [1, 1, 2] * 3},
        {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 5, 5], "keypoints": [0] * 9},
    ]
    _coco(tmp_path / "ann" / "kp.json", anns)
    recs = PARSERS["coco"](tmp_path, annotations={"train": "ann/kp.json"}, image_dirs={"train": "imgs"},
                           keypoint_names=_COCO_NAMES)
    assert len(recs) == 1  # crowd and unlabelled instances skipped
    r = recs[0]
    assert r.visibility.tolist() == [1, 1, 0] and r.meta["occluded"].tolist() == [0, 1, 0]
    np.testing.assert_allclose(r.bbox, [2, 3, 12, 23])
    assert r.image_size == (50, 40) and r.image == tmp_path / "imgs" / "000007.jpg"
    with pytest.raises(AnnotationError, match=r"categories.*differ"):
        PARSERS["coco"](tmp_path, annotations={"train": "ann/kp.json"}, image_dirs={"train": "imgs"},
                        keypoint_names=["x", "y", "z"])


def test_coco_unlabelled_images(tmp_path):
    (tmp_path / "info.json").write_text(json.dumps({"images": [{"id": 3, "file_name": "u.jpg", "height": 8,
                                                                 "width": 6}]}))
    _coco(tmp_path / "k.json", [])
    recs = PARSERS["coco"](tmp_path, annotations={"t": "k.json"}, image_dirs={"t": ".", "w": "wild"},
                           keypoint_names=_COCO_NAMES, unlabelled={"w": "info.json"})
    assert len(recs) == 1 and recs[0].visibility.sum() == 0 and recs[0].keypoints.shape == (3, 2)
    np.testing.assert_allclose(recs[0].bbox, [-0.5, -0.5, 5.5, 7.5])


# ----------------------------------------------------------------------------- CUB


def _cub(root: Path, n_img: int = 4, bad_line: str | None = None):
    d = root / "CUB_200_2011"
    (d / "parts").mkdir(parents=True)
    (d / "images.txt").write_text("".join(f"{i} {i:03d}.Bird/img_{i}.jpg\n" for i in range(1, n_img + 1)))
    (d / "bounding_boxes.txt").write_text("".join(f"{i} 10.0 20.0 30.0 40.0\n" for i in range(1, n_img + 1)))
    (d / "image_class_labels.txt").write_text("".join(f"{i} {i * 50}\n" for i in range(1, n_img + 1)))
    (d / "train_test_split.txt").write_text("".join(f"{i} {i % 2}\n" for i in range(1, n_img + 1)))
    (d / "classes.txt").write_text("".join(f"{c} {c:03d}.Some_Bird\n" for c in range(1, 201)))
    lines = []
    for i in range(1, n_img + 1):
        for p in range(1, 16):
            vis = 0 if p == 7 else 1
            lines.append(f"{i} {p} {0.0 if not vis else 10.0 + p} {0.0 if not vis else 20.0 + i} {vis}")
    if bad_line is not None:
        lines[17] = bad_line
    (d / "parts" / "part_locs.txt").write_text("\n".join(lines) + "\n")


def test_cub_parts_boxes_and_class_split(tmp_path):
    _cub(tmp_path)
    recs = PARSERS["cub"](tmp_path)
    assert len(recs) == 4
    r = recs[1]
    assert r.label == 99 and r.meta["class_id"] == 100 and r.meta["class_name"] == "100.Some_Bird"
    np.testing.assert_allclose(r.bbox, [10, 20, 40, 60])
    np.testing.assert_allclose(r.keypoints[0], [11, 22])
    assert r.visibility[6] == 0 and r.visibility.sum() == 14
    train = select_split(recs, {"where": {"class_id": {"range": [1, 100]}}})
    test = select_split(recs, {"where": {"class_id": {"range": [151, 200]}}})
    assert [x.meta["class_id"] for x in train] == [50, 100] and [x.meta["class_id"] for x in test] == [200]


# ----------------------------------------------------------------------------- iBUG .pts / 300W


def test_pts_round_trip_and_errors(tmp_path):
    pts = np.random.default_rng(1).uniform(0, 100, (68, 2)).round(3)
    write_pts(tmp_path / "a.pts", pts)
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts"), pts, atol=1e-3)
    text = (tmp_path / "a.pts").read_text().splitlines()
    text[10] = "12.0 oops"
    (tmp_path / "b.pts").write_text("\n".join(text))
    with pytest.raises(AnnotationError, match=r"b\.pts, line 11: expected a coordinate, got 'oops'"):
        read_pts(tmp_path / "b.pts")
    (tmp_path / "c.pts").write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n")
    with pytest.raises(AnnotationError, match=r"c\.pts, line 6: header says 3 points, found 2"):
        read_pts(tmp_path / "c.pts")


def test_300w_subsets_and_offset(tmp_path):
    for sub in ("afw", "helen/trainset", "ibug"):
        (tmp_path / sub).mkdir(parents=True)
        write_pts(tmp_path / sub / "f1.pts", np.full((68, 2), 11.0))
        _image(tmp_path / sub / "f1.png", 30, 30)
    subsets = {"afw": {"glob": "afw/*.pts", "split": "train"},
               "helen_train": {"glob": "helen/trainset/*.pts", "split": "train"},
               "ibug": {"glob": "ibug/*.pts", "split": "test"}}
    recs = parse("ibug_pts", tmp_path, {"subsets": subsets}, coordinate_offset=1)
    assert [r.meta["source_split"] for r in recs] == ["train", "train", "test"]
    assert recs[0].image.suffix == ".png"  # the existing image is found
    np.testing.assert_allclose(recs[0].keypoints, 10.0)


# ----------------------------------------------------------------------------- CelebA / MAFL


def _celeba(root: Path, names, bad: str | None = None):
    base = root / "celeb"
    for sub in ("Anno", "Eval", "MAFL"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    rows = [f"{n} 69 109 106 113 77 142 73 152 108 154" for n in names]
    if bad is not None:
        rows[1] = bad
    (base / "Anno" / "list_landmarks_align_celeba.txt").write_text(
        f"{len(names)}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
        f"rightmouth_x rightmouth_y\n" + "\n".join(rows) + "\n")
    (base / "Eval" / "list_eval_partition.txt").write_text("".join(f"{n} {i % 3 if i > 2 else 0}\n"
                                                                   for i, n in enumerate(names)))
    (base / "MAFL" / "training.txt").write_text(f"{names[3]}\n{names[4]}\n")
    (base / "MAFL" / "testing.txt").write_text(f"{names[0]}\n")


def test_celeba_and_mafl_protocol(tmp_path):
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    _celeba(tmp_path, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # expected counts are the paper's
        splits = load_splits("celeba", root=tmp_path)
    # CelebA train partition (0) = images 1-3 and 4 (index 3 -> 3 % 3 = 0); minus MAFL test image 1
    assert [r.meta["file"] for r in splits["train"]] == ["000002.jpg", "000003.jpg", "000004.jpg"]
    assert all(r.visibility.sum() == 0 for r in splits["train"])  # unlabelled pool
    assert [r.meta["file"] for r in splits["regressor_train"]] == ["000004.jpg", "000005.jpg"]
    assert [r.meta["file"] for r in splits["test"]] == ["000001.jpg"]
    r = splits["test"][0]
    np.testing.assert_allclose(r.keypoints[0], [69, 109])
    np.testing.assert_allclose(r.bbox, [-0.5, -0.5, 177.5, 217.5])


# ----------------------------------------------------------------------------- lmdis (AFLW-5, cats) and AFLW-19


def test_lmdis_mat_swaps_yx(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "aflw_train_images.txt").write_text("a.jpg\nsub/b.jpg\n")
    gt = np.zeros((2, 5, 2))
    gt[:, :, 0] = 10  # y
    gt[:, :, 1] = 30  # x
    scipy.io.savemat(tmp_path / "d" / "aflw_train_keypoints.mat", {"gt": gt, "hw": np.array([[80, 60], [80, 60]])})
    recs = PARSERS["lmdis_mat"](tmp_path, prefix="aflw", data_dir="d", image_dir="im", splits=["train"])
    np.testing.assert_allclose(recs[1].keypoints, [[30, 10]] * 5)
    assert recs[1].image == tmp_path / "im" / "sub" / "b.jpg" and recs[1].image_size == (80, 60)
    np.testing.assert_allclose(recs[0].bbox, [-0.5, -0.5, 59.5, 79.5])
    scipy.io.savemat(tmp_path / "d" / "aflw_train_keypoints.mat", {"gt": gt[:1], "hw": np.array([[80, 60]])})
    with pytest.raises(AnnotationError, match=r"aflw_train_keypoints\.mat, key 'gt': expected 2xKx2"):
        PARSERS["lmdis_mat"](tmp_path, prefix="aflw", data_dir="d", splits=["train"])


def test_aflw_cfss_split_ranks(tmp_path):
    n = 4
    data = np.zeros((n, 38))
    data[:, :19] = np.arange(19) + 1
    data[:, 19:] = np.arange(19) + 100
    mask = np.ones((n, 19))
    mask[2, 5] = 0
    ra = np.array([3, 1, 4, 2])
    names = np.array(["0/a.jpg", "0/b.jpg", "2/c.jpg", "3/d.jpg"], dtype=object)
    scipy.io.savemat(tmp_path / "AFLWinfo_release.mat", {"data": data, "mask_new": mask,
                                                         "bbox": np.tile([1, 50, 2, 60], (n, 1)),
                                                         "nameList": names[:, None], "ra": ra[None]})
    recs = PARSERS["aflw_cfss"](tmp_path)
    assert [r.meta["ra_rank"] for r in recs] == [2, 4, 1, 3]
    np.testing.assert_allclose(recs[0].keypoints[3], [4, 103])
    np.testing.assert_allclose(recs[0].bbox, [1, 2, 50, 60])  # stored as x0, x1, y0, y1
    assert recs[2].visibility[5] == 0 and recs[2].image == tmp_path / "flickr" / "2" / "c.jpg"
    train = select_split(recs, {"where": {"ra_rank": {"range": [1, 2]}}})
    assert sorted(r.meta["index"] for r in train) == [1, 3]


# ----------------------------------------------------------------------------- Penn Action, BBC Pose, Human3.6M


def _penn(root: Path, video: int, action: str, nframes: int, nbox: int):
    d = root / "Penn_Action" / "labels"
    d.mkdir(parents=True, exist_ok=True)
    x = np.tile(np.arange(13, dtype=float) + video, (nframes, 1))
    vis = np.ones((nframes, 13))
    vis[0, 2] = 0
    scipy.io.savemat(d / f"{video:04d}.mat", {
        "action": action, "pose": "front", "x": x, "y": x + 1, "visibility": vis, "train": 1,
        "bbox": np.tile([0.0, 0.0, 50.0, 60.0], (nbox, 1)), "dimensions": np.array([[100, 80, nframes]]),
        "nframes": nframes})


def test_penn_action_frames_and_ranks(tmp_path):
    _penn(tmp_path, 3, "golf_swing", 2, 2)
    _penn(tmp_path, 1, "golf_swing", 3, 2)  # fewer box rows than frames
    _penn(tmp_path, 2, "bowl", 1, 1)
    recs = PARSERS["penn_action"](tmp_path)
    assert len(recs) == 6
    v1 = [r for r in recs if r.meta["video"] == 1]
    assert [r.meta["frame"] for r in v1] == [1, 2, 3] and v1[2].bbox is None and v1[0].bbox is not None
    assert v1[0].image == tmp_path / "Penn_Action/frames/0001/000001.jpg"
    assert v1[0].meta["occluded"][2] == 1 and v1[0].visibility[2] == 1
    assert {r.meta["video"]: r.meta["video_rank_in_action"] for r in recs} == {1: 1, 3: 2, 2: 1}
    test = select_split(recs, {"where": {"action": {"in": ["golf_swing"]}, "video_rank_in_action": {"range": [1, 1]}}})
    splits = {"test": test}
    train = select_split(recs, {"where": {"action": {"in": ["golf_swing"]}}, "exclude": ["test"]}, splits=splits)
    assert len(test) == 3 and len(train) == 2 and {r.meta["video"] for r in train} == {3}
    np.testing.assert_allclose(v1[0].keypoints[4], [5, 6])


def test_bbcpose_struct_array(tmp_path):
    j_train = np.random.default_rng(2).uniform(10, 100, (2, 7, 3))
    j_test = np.random.default_rng(3).uniform(10, 100, (2, 7, 2))
    videos = _struct_array([
        {"videoName": "v1", "type": "train", "source": "buehler11", "train_frames": np.array([[10, 20, 30]]),
         "train_joints": j_train, "test_frames": np.zeros((0, 0)), "test_joints": np.zeros((0, 0))},
        {"videoName": "v2", "type": "test", "source": "buehler11", "train_frames": np.zeros((0, 0)),
         "train_joints": np.zeros((0, 0)), "test_frames": np.array([[5, 6]]), "test_joints": j_test},
    ])
    scipy.io.savemat(tmp_path / "bbcpose.mat", {"bbcpose": videos})
    for f in (10, 11, 20):
        _image(tmp_path / "1" / f"{f}.jpg", 4, 4)
    recs = parse("bbcpose", tmp_path, {"include_unlabelled_frames": True}, coordinate_offset=1)
    kinds = [(r.meta["video"], r.meta["frame"], r.meta["kind"]) for r in recs]
    assert kinds == [(1, 10, "train"), (1, 20, "train"), (1, 30, "train"), (1, 11, "none"),
                     (2, 5, "test"), (2, 6, "test")]
    np.testing.assert_allclose(recs[1].keypoints, j_train[:, :, 1].T - 1, rtol=1e-6)
    assert recs[3].visibility.sum() == 0
    assert recs[4].image == tmp_path / "." / "2" / "5.jpg"
    every = select_split(recs, {"where": {"type": "train"}, "every": {"key": "frame", "n": 10}})
    assert [r.meta["frame"] for r in every] == [10, 20, 30]


def test_h36m_pickles_and_safe_unpickling(tmp_path):
    kps = {"/train/000000.jpg": np.ones((32, 2)), "/test/000000.jpg": np.full((32, 2), 2.0)}
    boxes = {k: np.array([1, 2, 300, 400]) for k in kps}
    (tmp_path / "GroundtruthKeypoints.pickle").write_bytes(pickle.dumps(kps))
    (tmp_path / "HumanBoundingBoxes.pickle").write_bytes(pickle.dumps(boxes))
    recs = PARSERS["h36m"](tmp_path)
    assert [r.meta["source_split"] for r in recs] == ["test", "train"]
    assert recs[1].image == tmp_path / "images" / "train" / "000000.jpg"
    np.testing.assert_allclose(recs[0].bbox, [1, 2, 300, 400])

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))

    (tmp_path / "evil.pickle").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(AnnotationError, match=r"evil\.pickle.*refusing to load"):
        load_numpy_pickle(tmp_path / "evil.pickle")
    np.savez(tmp_path / "h.npz", images=np.array(["train/a.jpg"]), keypoints=np.zeros((1, 32, 2)),
             bbox=np.zeros((1, 4)))
    recs = PARSERS["h36m"](tmp_path, npz_file="h.npz")
    assert recs[0].meta["source_split"] == "train"


# ----------------------------------------------------------------------------- LS3D (300W-LP .mat + Torch7 .t7)


def test_torch7_round_trip_and_truncation(tmp_path):
    arr = np.random.default_rng(4).uniform(0, 450, (68, 2)).astype(np.float32)
    write_t7_tensor(tmp_path / "a.t7", arr)
    np.testing.assert_array_equal(read_t7(tmp_path / "a.t7"), arr)
    raw = (tmp_path / "a.t7").read_bytes()
    (tmp_path / "b.t7").write_bytes(raw[:-10])
    with pytest.raises(T7FormatError, match=r"b\.t7: truncated"):
        read_t7(tmp_path / "b.t7")


def test_ls3d_train_and_test_sources(tmp_path):
    ldir = tmp_path / "300W_LP" / "landmarks" / "AFW"
    ldir.mkdir(parents=True)
    pts = np.full((68, 2), 7.0)
    scipy.io.savemat(ldir / "AFW_1_0_pts.mat", {"pts_2d": pts, "pts_3d": pts + 1})
    (tmp_path / "bal" / "30-60").mkdir(parents=True)
    write_t7_tensor(tmp_path / "bal" / "30-60" / "x.t7", np.full((68, 2), 3.0, np.float32))
    recs = PARSERS["ls3d"](tmp_path, test_dir="bal", train_subsets=["AFW"])
    assert [r.meta["source_split"] for r in recs] == ["train", "test"]
    np.testing.assert_allclose(recs[0].keypoints, 8.0)  # pts_3d
    assert recs[0].image == tmp_path / "300W_LP" / "AFW" / "AFW_1_0.jpg"
    assert recs[1].meta["yaw_bucket"] == "30-60"


# ----------------------------------------------------------------------------- cats, hands, Multi-PIE


def test_cat_files(tmp_path):
    (tmp_path / "CAT_00").mkdir()
    (tmp_path / "CAT_00" / "0001.jpg.cat").write_text("9 " + " ".join(str(i) for i in range(18)) + " \n")
    recs = PARSERS["cat"](tmp_path)
    np.testing.assert_allclose(recs[0].keypoints[1], [2, 3])
    assert recs[0].image == tmp_path / "CAT_00" / "0001.jpg" and recs[0].meta["folder"] == "CAT_00"
    (tmp_path / "bad.cat").write_text("9 1 2 3\n")
    with pytest.raises(AnnotationError, match=r"bad\.cat, line 1: expected a count then 2 x count"):
        read_cat(tmp_path / "bad.cat")


def test_hgr1_xml_points(tmp_path):
    d = tmp_path / "feature_points"
    d.mkdir()
    pts = "".join(f'  <Point X="{i}" Y="{i + 100}" />\n' for i in range(25))
    for name in ("A_P_hgr1_id03_1", "B_P_hgr1_id11_2"):
        (d / f"{name}.xml").write_text(f"<?xml version='1.0'?>\n<Image>\n<Points>\n{pts}</Points>\n</Image>\n")
    recs = PARSERS["hgr1"](tmp_path)
    assert [(r.meta["gesture"], r.meta["subject"], r.label) for r in recs] == [("A", 3, 0), ("B", 11, 1)]
    np.testing.assert_allclose(recs[0].keypoints[24], [24, 124])
    (tmp_path / "bad.xml").write_text("<a>\n<b>\n</a>\n")
    with pytest.raises(AnnotationError, match=r"bad\.xml, line 3: malformed XML"):
        read_hgr_points(tmp_path / "bad.xml")


def test_multipie_labels_and_random_illumination(tmp_path):
    d = tmp_path / "landmarks"
    d.mkdir()
    for subj, sess, rec, cam in ((1, 2, 3, "051"), (1, 4, 3, "140"), (2, 1, 1, "190")):
        for ill in (1, 7, 9):
            write_pts(d / f"{subj:03d}_{sess:02d}_{rec:02d}_{cam}_{ill:02d}_lm.pts", np.ones((68, 2)))
    recs = PARSERS["multipie"](tmp_path)
    assert len(recs) == 6  # camera 190 is not among the five
    assert {r.meta["expression"] for r in recs} == {"squint", "scream"}
    assert {(r.meta["camera"], r.meta["camera_class"]) for r in recs} == {("051", 0), ("140", 2)}
    one = PARSERS["multipie"](tmp_path, illumination="random", seed=5)
    again = PARSERS["multipie"](tmp_path, illumination="random", seed=5)
    assert len(one) == 2 and [r.meta["illumination"] for r in one] == [r.meta["illumination"] for r in again]


# ----------------------------------------------------------------------------- splits and the lazy dataset


def _recs(n):
    return [Record(image=Path(f"/x/{i}.jpg"), keypoints=np.zeros((1, 2)), visibility=np.ones(1),
                   meta={"k": i, "name": f"n{i}"}) for i in range(n)]


def test_select_split_rules(tmp_path):
    recs = _recs(10)
    (tmp_path / "list.txt").write_text("n1 extra\nn3\n")
    listed = select_split(recs, {"where": {"name": {"in_file": "list.txt"}}}, root=tmp_path)
    assert [r.meta["k"] for r in listed] == [1, 3]
    assert len(select_split(recs, {"where": {"name": {"regex": "^n[0-4]$"}}})) == 5
    a = select_split(recs, {"random": {"seed": 3, "take": [0, 0.3]}})
    b = select_split(recs, {"random": {"seed": 3, "take": [3, 10]}})
    assert len(a) == 3 and len(b) == 7 and {r.meta["k"] for r in a}.isdisjoint({r.meta["k"] for r in b})
    with pytest.raises(KeyError, match="meta key 'nope'"):
        select_split(recs, {"where": {"nope": 1}})
    with pytest.raises(ValueError, match="unknown split rule operator 'like'"):
        select_split(recs, {"where": {"k": {"like": 1}}})


def test_record_dataset_crop_and_resize(tmp_path):
    img = np.zeros((32, 32, 3), np.uint8)
    img[7, 10] = 255  # one bright pixel at (x=10, y=7)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    spec = DatasetSpec("toy", ("p", "q"))
    rec = Record(image=tmp_path / "a.png", keypoints=[[10, 7], [40, 3]], visibility=[1, 1],
                 bbox=[-0.5, -0.5, 31.5, 31.5], label=2, meta={"head_box": [0, 0, 4, 4]})
    with pytest.warns(OutOfImageWarning):
        s = RecordDataset([rec], spec, size=(64, 64), padding=0.0)[0]
    np.testing.assert_allclose(s.keypoints[0], [20.5, 14.5], atol=1e-5)  # x' = (x + 0.5) * 2 - 0.5
    assert s.visibility.tolist() == [1, 0]
    ys, xs = np.nonzero(s.image[..., 0] > 60)
    w = s.image[ys, xs, 0].astype(float)
    assert abs((xs * w).sum() / w.sum() - 20.5) < 0.3 and abs((ys * w).sum() / w.sum() - 14.5) < 0.3
    np.testing.assert_allclose(s.bbox, [-0.5, -0.5, 63.5, 63.5], atol=1e-5)
    np.testing.assert_allclose(s.meta["head_box"], [0.5, 0.5, 8.5, 8.5], atol=1e-5)
    same = RecordDataset([rec], spec, size=(32, 32), padding=0.0, out_of_image="ignore")[0]
    np.testing.assert_array_equal(same.image, img[..., ::-1])  # identity crop; BGR file -> RGB
    arr = RecordDataset([rec, rec], spec, size=(16, 24), padding=0.25, out_of_image="ignore").to_arrays()
    assert arr.images.shape == (2, 16, 24, 3) and arr.labels.tolist() == [2, 2]
    assert arr.meta["transform"].shape == (2, 3, 3) and arr.meta["head_box"].shape == (2, 4)
    # the crop keeps the aspect ratio: equal scales on x and y
    assert abs(arr.meta["transform"][0, 0, 0] - arr.meta["transform"][0, 1, 1]) < 1e-6


def test_record_dataset_missing_image_names_file(tmp_path):
    spec = DatasetSpec("toy", ("p",))
    rec = Record(image=tmp_path / "nope.jpg", keypoints=[[1, 1]], visibility=[1], bbox=[0, 0, 4, 4])
    with pytest.raises(FileNotFoundError, match=r"nope\.jpg does not exist"):
        RecordDataset([rec], spec)[0]
    with pytest.raises(ValueError, match="2 keypoints, spec 'toy' declares 1"):
        RecordDataset([Record(image=tmp_path / "x.jpg", keypoints=np.zeros((2, 2)), visibility=[1, 1])], spec)


def test_cub_end_to_end_through_manifest(tmp_path):
    from landmark_study.data.real import load_dataset

    _cub(tmp_path)
    for i in range(1, 5):
        _image(tmp_path / "CUB_200_2011" / "images" / f"{i:03d}.Bird" / f"img_{i}.jpg", 80, 100, value=40 * i)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the paper's counts differ from the fixture's
        ds = load_dataset("cub", "train", size=(32, 32), padding=0.0, root=tmp_path)
    arr = ds.to_arrays()
    assert len(arr) == 2 and arr.spec.name == "cub" and arr.spec.flip_pairs == ((6, 10), (7, 11), (8, 12))
    assert arr.labels.tolist() == [49, 99]
    # box (10, 20)-(40, 60) grown to a square 40 x 40 around its centre (25, 40), mapped onto 32 x 32
    np.testing.assert_allclose(arr.bbox[0], [3.5, -0.5, 27.5, 31.5], atol=1e-4)
    assert abs(int(arr.images[1, 16, 16, 0]) - 80) <= 2  # image 2 was filled with value 80
    with pytest.raises(KeyError, match=r"cub\.yaml: protocol 'moskvyak2021' has no split 'dev'"), \
            pytest.warns(SplitCountWarning):
        load_dataset("cub", "dev", root=tmp_path)


def test_coco_manifest_checks_keypoint_names(tmp_path):
    names = list(load_manifest("coco").keypoint_names)
    anns = [{"id": i, "image_id": 7, "category_id": 1, "iscrowd": 0, "bbox": [1, 1, 5, 5],
             "keypoints": [3, 3, 2] * 17} for i in range(1, 4)]
    _coco(tmp_path / "annotations" / "person_keypoints_train2017.json", anns, names)
    _coco(tmp_path / "annotations" / "person_keypoints_val2017.json", anns[:1], names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitCountWarning)
        splits = load_splits("coco", "xie2021_1k", root=tmp_path)
    assert [len(splits[s]) for s in ("labelled", "unlabelled", "val")] == [3, 0, 1]
    _coco(tmp_path / "annotations" / "person_keypoints_val2017.json", anns[:1], ["x"] * 17)
    with pytest.raises(AnnotationError, match=r"person_keypoints_val2017\.json, key 'categories' \(id 1\)"):
        load_splits("coco", "xie2021_1k", root=tmp_path)
