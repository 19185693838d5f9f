"""Unsupervised landmarks by recovering correspondence through clustering (Mallis et al.).

Two methods, each run a separate entry in the results store:

* ``clustering_correspondence`` (stage 1): a shared backbone with a 1-channel
  detector head (sigmoid; MSE against a delta map at the pseudo-label points) and a
  ``d``-dim descriptor head (contrastive loss). ``method_options.round`` = 0 is the
  equivariance warm-up on initial keypoints (classical SIFT/ORB/GFTT + ANMS, or a
  mixture of ground-truth and random points for the noise experiment); round
  ``r >= 1`` starts from round ``r - 1``'s weights (through :meth:`prepare_data` and
  :func:`landmark_study.runs.trained_method`), detects points with it, clusters their
  descriptors (TPAMI's modified K-means or NeurIPS's K-means + Hungarian + threshold)
  and trains on the resulting pseudo-labels.
* ``clustering_landmarks`` (stage 2): a ``K``-channel heatmap detector (backbone from
  stage 1) trained on the stage-1 landmark pseudo-labels, loss masked to labelled
  channels, flip augmentation with the recovered flip permutation and test-time flip
  averaging.

Evaluation (both): forward and backward NME through ridge regressors
(:func:`landmark_study.metrics.forward_nme`/``backward_nme``) fitted on training images,
normalised by ``sqrt(w h)`` of the ground-truth box (large-pose faces).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import clustering as CL
from .. import geometry, heatmaps
from ..config import ConfigError, RunConfig, run_config_from_dict, spec, to_dict
from ..data.sample import ArrayDataset, DatasetSpec
from ..losses import contrastive_loss
from ..models import build_model
from . import register
from .base import Batch, Method
from .supervised import HeatmapMethod

INITS = ("orb", "sift", "gftt", "gt_mix")
#: options that do not change a warm-up (round 0) run; reset so that arms share it
_ROUND_ONLY = ("variant", "num_clusters", "negatives", "correspondence")

_WARM_START: dict[str, dict[str, torch.Tensor]] = {}
_TEACHERS: dict[str, Any] = {}  # trained methods loaded in this process, by run key
_FLIP_DIAG: dict[str, dict[str, float]] = {}  # prepare_data -> evaluate, by run key


def _teacher(config: RunConfig):
    """:func:`landmark_study.runs.trained_method`, memoised per process (a round's
    prepare_data would otherwise redo every earlier round's pseudo-labelling)."""
    from ..runs import trained_method

    key = _key(config)
    if key not in _TEACHERS:
        if len(_TEACHERS) > 8:
            _TEACHERS.clear()
        _TEACHERS[key] = trained_method(config)
    return _TEACHERS[key]


def _key(config: RunConfig) -> str:
    from ..runs import run_key

    return run_key(config)


def sqrt_wh(ds: ArrayDataset) -> np.ndarray:
    """sqrt(w h) of each sample's ground-truth box (the large-pose NME normaliser)."""
    w = ds.bbox[:, 2] - ds.bbox[:, 0]
    h = ds.bbox[:, 3] - ds.bbox[:, 1]
    return np.sqrt(np.clip(w * h, 1e-6, None)).astype(np.float64)


def regression_metrics(disc_tr, gt_tr: ArrayDataset, disc_te, gt_te: ArrayDataset, n_regress: int,
                       seed: int, fill: str) -> dict[str, float]:
    """The clustering chapter's forward/backward NME protocol (sqrt(wh) normaliser, 5 repeats,
    ``fill`` for missing training landmarks), shared with the template method's evaluation."""
    from ..metrics import backward_nme, forward_nme

    out: dict[str, float] = {}
    ok = np.isfinite(disc_tr).all(-1)
    if ok.sum() == 0 or not np.isfinite(disc_te).any():
        return {"fnme": float("nan"), "bnme": float("nan")}
    n = len(disc_tr)
    cols = ok.any(0)  # landmarks never detected in training carry nothing
    dtr, dte = disc_tr[:, cols], disc_te[:, cols]
    f = forward_nme(dtr, gt_tr.keypoints, dte, gt_te.keypoints, sqrt_wh(gt_te), n_train=min(n_regress, n),
                    repeats=5, seed=seed, fill=fill, visibility_test=gt_te.visibility)
    b = backward_nme(dtr, gt_tr.keypoints, dte, gt_te.keypoints, sqrt_wh(gt_te), n_train=min(n_regress, n),
                     repeats=5, seed=seed)
    out["fnme"] = float(f["mean"])
    out["bnme"] = float(b["mean"])
    out["fnme_per_landmark"] = [round(float(v), 5) for v in f["per_landmark"]]
    out["fnme_per_image"] = [round(float(v), 5) if np.isfinite(v) else None for v in f["per_image"]]
    return out


# ---------------------------------------------------------------------------
# stage 1
# ---------------------------------------------------------------------------

@register
class ClusteringCorrespondence(Method):
    """Stage 1: detector + descriptor trained on pseudo-labels from clustering."""

    name = "clustering_correspondence"
    # 2: detector bias prior, relative detection threshold, rounds mix same-image and
    #    cross-image pairs, same-image negatives topped up with random pixels
    version = "3"  # 3: float32 k-means++ seeding (same rule, faster)
    loss_names = ("detector", "descriptor")
    default_weights = {"detector": 1.0, "descriptor": 10.0}  # the authors' weights

    @dataclass(frozen=True)
    class Options:
        round: int = spec(0, range=(0, 100), help="0 = equivariance warm-up; r >= 1 trains on clusters of round r-1")
        warmup_steps: int = spec(500, range=(1, None), help="train.steps of the round-0 run")
        init: str = spec("orb", choices=INITS, help="initial keypoints of the warm-up")
        init_points: int = spec(20, range=(1, 500), help="initial keypoints per image")
        real_fraction: float = spec(0.4, range=(0.0, 1.0), help="gt_mix: probability a point is a real landmark")
        variant: str = spec("tpami", choices=("tpami", "neurips"))
        num_landmarks: int = spec(20, range=(1, 1000), help="K")
        num_clusters: int = spec(80, range=(1, 100_000), help="M")
        negatives: str = spec("same_image", choices=("same_image", "different_cluster"))
        correspondence: str = spec("clustering", choices=("clustering", "equivariance"))
        descriptor_dim: int = spec(32, range=(2, 1024))
        margin: float = spec(0.8, range=(0.0, 4.0))
        neg_min_dist: float = spec(0.089, range=(0.0, 1.0), help="negatives closer than this x image side are dropped")
        max_pairs: int = spec(3000, range=(10, None), help="keypoint-pair negatives per image, at most")
        random_negatives: int = spec(200, range=(0, 100_000),
                                     help="same_image: keypoint-vs-random-pixel negatives per view (authors: fill to 5000)")
        same_image_pairs: float = spec(0.5, range=(0.0, 1.0),
                                       help="rounds: fraction of pairs that are one image under two deformations "
                                            "(the rest: two images, positives = same cluster); authors 0.5")
        max_detections: int = spec(30, range=(1, 1000))
        detect_threshold: float = spec(0.15, range=(0.0, 1.0),
                                       help="NMS maxima kept above this (x the image's detector peak if "
                                            "threshold_relative); the authors: 0.15 (K2L) / 0.2 (UL) absolute")
        threshold_relative: bool = spec(True, help="detect_threshold is a fraction of each image's detector peak "
                                                   "(the absolute value assumes a fully trained detector)")
        nms_radius: int = spec(1, range=(0, 10), help="heatmap px")
        outlier_knn: int = spec(100, range=(1, None))
        outlier_drop: float = spec(0.4, range=(0.0, 0.99))
        cluster_images: int = spec(600, range=(10, None), help="training images clustered per round")
        max_points_per_centroid: int | None = spec(None, range=(1, None), help="faiss; None = use every point")
        n_regress: int = spec(300, range=(10, None), help="training images of the evaluation regressors")
        nmi_radius: float = spec(0.04, range=(0.0, 1.0), help="NMI/precision radius x image side (10 px at 256)")

        def validate(self) -> None:
            if self.num_clusters < 1 or self.num_landmarks < 1:
                raise ConfigError("num_clusters and num_landmarks must be >= 1")

    # -- config plumbing -----------------------------------------------------
    @staticmethod
    def round_config(config: RunConfig, r: int) -> RunConfig:
        """The config of round ``r`` of the run ``config`` belongs to (round 0 resets the
        round-only options, so arms differing only in them share one warm-up)."""
        o = dict(config.method_options)
        o["round"] = int(r)
        ch: dict[str, Any] = {"method_options": o}
        if r == 0:
            defaults = ClusteringCorrespondence.Options()
            for k in _ROUND_ONLY:
                o.pop(k, None)
            ch["train.steps"] = int(o.get("warmup_steps", defaults.warmup_steps))
        return config.with_overrides(**ch)

    # -- data ----------------------------------------------------------------
    @classmethod
    def prepare_data(cls, config: RunConfig, data: Any, device: torch.device) -> Any:
        o = config.options()
        train = data.labeled if data.unlabeled is None else _concat(data.labeled, data.unlabeled)
        if o.round == 0:
            kp, vis = initial_keypoints(train, o, seed=config.seed)
        else:
            teacher = _teacher(cls.round_config(config, o.round - 1))
            n = min(o.cluster_images, len(train))
            det = teacher.detect_and_describe(train.images)
            res = teacher.cluster(det, n_first=n, first_round=o.round == 1)
            lab = res.train_labels
            kp, vis = _label_arrays(det, lab, res.train_centroids.shape[0])
            _WARM_START[_key(config)] = {k: v.detach().cpu().clone() for k, v in teacher.module.state_dict().items()}
        spec_ = DatasetSpec(name=f"{train.spec.name}-pseudo", keypoint_names=tuple(f"s{i}" for i in range(kp.shape[1])),
                            normaliser="bbox")
        pseudo = ArrayDataset(spec=spec_, images=train.images, keypoints=kp.astype(np.float32),
                              visibility=vis.astype(np.float32), bbox=train.bbox, meta={})
        return dataclasses.replace(data, labeled=pseudo, unlabeled=None)

    def build(self) -> nn.Module:
        m = self.config.model
        net = build_model(m.name, 0, width=m.width, heatmap_stride=m.heatmap_stride, head="detector_descriptor",
                          descriptor_dim=self.options.descriptor_dim, **m.options)
        state = _WARM_START.pop(_key(self.config), None)
        if state is not None:
            net.load_state_dict(state)
        else:
            with torch.no_grad():
                net.head.detector.bias.fill_(detector_prior_logit(self.options.init_points, self.heatmap_size))
        self.landmarks: dict[str, np.ndarray] | None = None
        self._reference: ArrayDataset | None = None
        return net

    @property
    def heatmap_size(self) -> tuple[int, int]:
        s = self.config.model.heatmap_stride
        return self.image_size[0] // s, self.image_size[1] // s

    # -- training ------------------------------------------------------------
    def _augment(self, images, kp, vis):
        a = self.config.train.augment
        m = geometry.sample_affine(images.shape[0], self.image_size, rotation=a.rotation, scale=a.scale,
                                   translation=a.translation, generator=self.generator).to(self.device)
        img = geometry.warp_images(images, m)
        k2, v2 = geometry.warp_keypoints(kp, vis, m, self.image_size)
        return img, k2, v2

    def _sample(self, desc: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
        """Descriptors (B, S, d) at image points (B, S, 2), bilinear, re-normalised."""
        hw = self.heatmap_size
        p = heatmaps.image_to_heatmap(kp, self.image_size, hw)
        gx = (p[..., 0] + 0.5) / hw[1] * 2 - 1
        gy = (p[..., 1] + 0.5) / hw[0] * 2 - 1
        g = torch.stack([gx, gy], -1)[:, :, None, :]
        s = F.grid_sample(desc, g, mode="bilinear", align_corners=False)[..., 0]  # (B, d, S)
        return F.normalize(s.transpose(1, 2), dim=-1)

    def _detector_loss(self, det: torch.Tensor, kp: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        pts = heatmaps.image_to_heatmap(kp, self.image_size, self.heatmap_size)
        maps, _ = heatmaps.encode_delta(pts, self.heatmap_size, vis)
        target = maps.amax(1, keepdim=True)
        return F.mse_loss(det, target)

    def _subsample(self, n: int, cap: int) -> torch.Tensor:
        if n <= cap:
            return torch.arange(n)
        return torch.randperm(n, generator=self.generator)[:cap]

    def _pairing(self, b: int, device: torch.device) -> torch.Tensor:
        """Index of the image shown in view 2 for each image of view 1. Warm-up and
        equivariance: the image itself (a synthetic deformation). Clustering rounds: with
        probability ``same_image_pairs`` the image itself, else another image of the batch
        (positives = same cluster label), as in TPAMI Sec. 3.4 and the authors' sampler."""
        o = self.options
        idx = torch.arange(b)
        if o.round == 0 or o.correspondence == "equivariance" or b < 2:
            return idx.to(device)
        other = (idx + torch.randint(1, b, (b,), generator=self.generator)) % b
        same = torch.rand(b, generator=self.generator) < o.same_image_pairs
        return torch.where(same, idx, other).to(device)

    def _random_negatives(self, desc: torch.Tensor, kp: torch.Tensor, vis: torch.Tensor, n: int,
                          min_d: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` pairs per image (keypoint, random pixel of the same image at least ``min_d``
        px away): TPAMI's "any other location far from j is a good negative"."""
        b, s = vis.shape
        if n == 0 or s == 0:
            return desc.new_zeros((0, desc.shape[1])), desc.new_zeros((0, desc.shape[1]))
        h, w = self.image_size
        dev = desc.device
        u = torch.rand(b, n, 2, generator=self.generator).to(dev) * torch.tensor([w - 1, h - 1], device=dev)
        # a random visible keypoint per pair (uniform over the visible ones)
        wts = vis.float() + 1e-12
        j = torch.multinomial(wts.cpu(), n, replacement=True, generator=self.generator).to(dev)  # (B, n)
        pk = torch.gather(kp, 1, j[..., None].expand(-1, -1, 2))
        ok = vis.any(1, keepdim=True) & ((pk - u).norm(dim=-1) >= min_d)
        fa = torch.gather(self._sample(desc, kp), 1, j[..., None].expand(-1, -1, desc.shape[1]))
        fb = self._sample(desc, u)
        return fa[ok], fb[ok]

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> dict[str, torch.Tensor]:
        o = self.options
        img, kp, vis = labeled.images, labeled.keypoints, labeled.visibility > 0
        b, s = vis.shape
        dev = img.device
        min_d = o.neg_min_dist * max(self.image_size)
        partner = self._pairing(b, dev)
        i1, k1, v1 = self._augment(img, kp, vis.float())
        i2, k2, v2 = self._augment(img[partner], kp[partner], vis[partner].float())
        out = self.module(torch.cat([i1, i2]))
        det, desc = out["detector"], out["descriptors"]
        loss_det = self._detector_loss(det[:b], k1, v1) + self._detector_loss(det[b:], k2, v2)
        da, db = self._sample(desc[:b], k1), self._sample(desc[b:], k2)
        va, vb = v1 > 0, v2 > 0
        eye = torch.eye(s, dtype=torch.bool, device=dev)
        # positives: same slot = the same keypoint (a deformation of the image) or the
        # same cluster label (another image)
        pos = va & vb  # (B, S)
        pa, pb = da[pos], db[pos]
        if o.negatives == "same_image" or o.round == 0:
            # all pairs of keypoints within one view (both views), far enough apart, plus
            # keypoint-vs-random-pixel pairs of the same image
            dd, kk, vv = torch.cat([da, db]), torch.cat([k1, k2]), torch.cat([va, vb])
            far = torch.cdist(kk, kk) >= min_d
            neg = vv[:, :, None] & vv[:, None, :] & torch.triu(~eye, 1) & far
            bi, si, ti = torch.nonzero(neg, as_tuple=True)
            keep = self._subsample(len(bi), max(o.max_pairs * b, 1)).to(dev)
            na, nb = dd[bi[keep], si[keep]], dd[bi[keep], ti[keep]]
            ra, rb = self._random_negatives(desc, kk, vv, o.random_negatives, min_d)
            na, nb = torch.cat([na, ra]), torch.cat([nb, rb])
        else:
            # different cluster labels, across images (NeurIPS): view 1 of image i vs
            # view 2 of the next pair in the batch
            nxt = torch.roll(torch.arange(b, device=dev), 1)
            other, vo = db[nxt], vb[nxt]
            neg = va[:, :, None] & vo[:, None, :] & ~eye
            bi, si, ti = torch.nonzero(neg, as_tuple=True)
            keep = self._subsample(len(bi), max(o.max_pairs * b - len(pa), 1)).to(dev)
            na, nb = da[bi[keep], si[keep]], other[bi[keep], ti[keep]]
        a_all = torch.cat([pa, na])
        b_all = torch.cat([pb, nb])
        label = torch.cat([torch.ones(len(pa), dtype=torch.bool), torch.zeros(len(na), dtype=torch.bool)]).to(dev)
        if len(a_all) == 0:
            loss_desc = da.sum() * 0.0
        else:
            loss_desc = contrastive_loss(a_all, b_all, label, margin=o.margin)
        self.diagnostics["positives"] = float(len(pa)) / b
        self.diagnostics["negatives"] = float(len(na)) / b
        self.diagnostics["same_image_pairs"] = float((partner == torch.arange(b, device=dev)).float().mean())
        self.diagnostics["peak"] = float(det.detach().amax(dim=(2, 3)).mean())
        self.diagnostics["background"] = float(det.detach().median())
        return {"detector": loss_det, "descriptor": loss_desc}

    # -- detection, description, clustering -----------------------------------
    @torch.no_grad()
    def detect_and_describe(self, images: np.ndarray, chunk: int = 128) -> dict[str, np.ndarray]:
        """Points (image px), scores, descriptors and image ids of all detections in
        ``images`` (N, H, W, 3) uint8; also descriptors of the mirrored image at the
        mirrored points (``mirrored``), for the flip correspondence."""

        o = self.options
        was = self.module.training
        self.module.eval()
        pts, scores, desc, mdesc, ids = [], [], [], [], []
        w = self.image_size[1]
        for s0 in range(0, len(images), chunk):
            x = torch.from_numpy(np.ascontiguousarray(images[s0:s0 + chunk].transpose(0, 3, 1, 2))).to(self.device)
            x = x.float().div_(255.0)
            out = self.module(x)
            outm = self.module(torch.flip(x, dims=[3]))
            found = detect_points(out["detector"], o.detect_threshold, o.threshold_relative, o.nms_radius,
                                  o.max_detections)
            for j, (p, sc) in enumerate(found):
                if len(p) == 0:
                    continue
                pi = heatmaps.heatmap_to_image(p.astype(np.float64), self.image_size, self.heatmap_size)
                t = torch.from_numpy(pi.astype(np.float32))[None].to(self.device)
                desc.append(self._sample(out["descriptors"][j:j + 1], t)[0].cpu().numpy())
                tm = t.clone()
                tm[..., 0] = (w - 1) - tm[..., 0]
                mdesc.append(self._sample(outm["descriptors"][j:j + 1], tm)[0].cpu().numpy())
                pts.append(pi.astype(np.float32))
                scores.append(sc)
                ids.append(np.full(len(p), s0 + j, np.int64))
        self.module.train(was)
        d = self.options.descriptor_dim
        cat = (lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape, np.float32))
        return {"points": cat(pts, (0, 2)), "scores": cat(scores, (0,)), "desc": cat(desc, (0, d)),
                "mirrored": cat(mdesc, (0, d)), "ids": cat(ids, (0,)).astype(np.int64), "n_images": len(images)}

    def cluster(self, det: dict[str, np.ndarray], n_first: int, first_round: bool) -> CL.ClusterResult:
        """Cluster the detections of the first ``n_first`` images; the rest are assigned
        to the learned clusters. Sets :attr:`landmarks` (centroids and thresholds)."""
        o = self.options
        sel = det["ids"] < n_first
        x, ids = det["desc"][sel], det["ids"][sel]
        if len(x) < max(o.num_clusters, o.num_landmarks) + 1:
            raise ConfigError(f"only {len(x)} detections to cluster into M={o.num_clusters} clusters; "
                              "lower detect_threshold or raise cluster_images")
        mask = CL.remove_outliers(x, o.outlier_knn, o.outlier_drop) if first_round else None
        seed = self.config.seed * 1000 + o.round
        if o.variant == "tpami":
            r = CL.tpami_clustering(x, ids, o.num_landmarks, o.num_clusters, seed=seed, outlier_mask=mask,
                                    max_points_per_centroid=o.max_points_per_centroid)
        else:
            r = CL.neurips_clustering(x, ids, o.num_clusters, seed=seed, outlier_mask=mask,
                                      max_points_per_centroid=o.max_points_per_centroid)
        self.landmarks = {"centroids": r.landmark_centroids, "thresholds": r.landmark_thresholds,
                          "train_centroids": r.train_centroids}
        land = np.full(len(det["ids"]), -1, np.int64)
        train = np.full(len(det["ids"]), -1, np.int64)
        land[sel], train[sel] = r.landmark_labels, r.train_labels
        rest = ~sel
        if rest.any():
            land[rest] = CL.assign_to_landmarks(det["desc"][rest], det["ids"][rest], r.landmark_centroids,
                                                r.landmark_thresholds)
            tl = CL.assign_to_landmarks(det["desc"][rest], det["ids"][rest], r.train_centroids)
            train[rest] = tl
        return dataclasses.replace(r, landmark_labels=land, train_labels=train)

    def landmark_points(self, det: dict[str, np.ndarray], labels: np.ndarray | None = None) -> np.ndarray:
        """(N, L, 2) discovered landmarks, nan where not detected."""
        assert self.landmarks is not None
        if labels is None:
            labels = CL.assign_to_landmarks(det["desc"], det["ids"], self.landmarks["centroids"],
                                            self.landmarks["thresholds"]) if len(det["ids"]) else np.zeros(0, int)
        kp, vis = _label_arrays(det, labels, len(self.landmarks["centroids"]))
        return np.where(vis[..., None] > 0, kp, np.nan)

    # -- evaluation ------------------------------------------------------------
    def _reference_set(self) -> ArrayDataset:
        if self._reference is None:
            from ..train import load_run_data

            d = load_run_data(self.config.data)
            train = d.labeled if d.unlabeled is None else _concat(d.labeled, d.unlabeled)
            n = max(self.options.cluster_images, self.options.n_regress)
            self._reference = train.subset(np.arange(min(n, len(train))))
        return self._reference

    def evaluate(self, ds: ArrayDataset, device: torch.device) -> dict[str, Any]:
        from ..keypoints import precision_recall
        from ..metrics import hungarian_accuracy, nmi

        o = self.options
        ref = self._reference_set()
        det_tr = self.detect_and_describe(ref.images)
        out: dict[str, Any] = {}
        try:
            res = self.cluster(det_tr, n_first=min(o.cluster_images, len(ref)), first_round=o.round == 0)
        except ConfigError:
            return {"fnme": float("nan"), "bnme": float("nan"), "ppe": 0.0}
        disc_tr = self.landmark_points(det_tr, res.landmark_labels)
        det_te = self.detect_and_describe(ds.images)
        disc_te = self.landmark_points(det_te)
        out.update(regression_metrics(disc_tr, ref, disc_te, ds, o.n_regress, self.config.seed, "svt"))
        out["ppe"] = float(np.isfinite(disc_te).all(-1).sum(1).mean())
        out["detections_per_image"] = float(len(det_te["ids"]) / max(len(ds), 1))
        radius = o.nmi_radius * max(self.image_size)
        dets = [det_te["points"][det_te["ids"] == i] for i in range(len(ds))]
        pr = precision_recall(dets, ds.keypoints, ds.visibility, radius)
        p, r = pr["precision"], pr["recall"]
        out["precision"], out["recall"] = float(p), float(r)
        out["f1"] = float(2 * p * r / (p + r)) if (p + r) > 0 else 0.0
        out["nmi"] = descriptor_nmi(det_tr, ref, o.num_clusters, radius, seed=self.config.seed)
        acc = hungarian_accuracy(disc_te, ds.keypoints, ds.visibility, 0.1 * sqrt_wh(ds))
        out["accuracy"] = float(acc["accuracy"])
        out["accuracy_per_joint"] = [None if not np.isfinite(v) else round(float(v), 4) for v in acc["per_joint"]]
        return out

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Discovered landmarks (B, L, 2) (``-1`` where not detected) and confidence 1/0.
        Needs the clusters of an :meth:`evaluate` call (the loop's final test does one)."""
        arr = (images.detach().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        det = self.detect_and_describe(arr)
        if self.landmarks is None:
            raise RuntimeError("predict needs landmark clusters: call evaluate first")
        pts = self.landmark_points(det)
        ok = np.isfinite(pts).all(-1)
        pts = np.where(ok[..., None], pts, -1.0)
        return torch.from_numpy(pts.astype(np.float32)), torch.from_numpy(ok.astype(np.float32))


def detect_points(detector: torch.Tensor, threshold: float, relative: bool, radius: int,
                  max_points: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """NMS maxima of detector maps (B, 1, h, w) above ``threshold`` -- or, ``relative``,
    above ``threshold`` x each map's own maximum -- at most ``max_points`` per map, by
    score: ``[(points (P, 2) heatmap px, scores (P,))]``."""
    from ..keypoints import nms_heatmap

    d = detector.detach().float()
    if not relative:
        return nms_heatmap(d, threshold=threshold, radius=radius, max_points=max_points)
    peak = d.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    found = nms_heatmap(d / peak, threshold=threshold, radius=radius, max_points=max_points)
    return [(p, (sc * float(pk)).astype(np.float32)) for (p, sc), pk in zip(found, peak.flatten().cpu())]


def detector_prior_logit(points: int, heatmap_size: tuple[int, int]) -> float:
    """Initial detector bias: the logit of the fraction of heatmap pixels that are keypoints
    (``points / (h w)``), so that the sigmoid starts at the background level of the delta
    targets instead of 0.5 (the prior initialisation of Lin et al. 2017). With the papers'
    30k warm-up iterations the starting level does not matter; with a few hundred Adam
    steps a zero bias leaves the whole map near 0.2 and every NMS maximum above any
    absolute threshold."""
    p = min(max(points / float(heatmap_size[0] * heatmap_size[1]), 1e-4), 0.5)
    return float(np.log(p / (1.0 - p)))


def descriptor_nmi(det: dict[str, np.ndarray], ds: ArrayDataset, m: int, radius: float, seed: int = 0) -> float:
    """NMI between K-means (to ``m``) labels of the descriptors of detections lying within
    ``radius`` px of a visible ground-truth landmark and the label of that landmark
    (Mallis et al. thesis Sec. 5.4.2). nan with too few such detections."""
    from ..metrics import nmi

    gt = ds.keypoints[det["ids"]]  # (P, K, 2)
    vis = ds.visibility[det["ids"]] > 0
    d = np.linalg.norm(gt - det["points"][:, None, :], axis=-1)
    d = np.where(vis, d, np.inf)
    near = d.min(1) <= radius
    if near.sum() < m + 1:
        return float("nan")
    km = CL.kmeans(det["desc"][near], m, seed=seed)
    return nmi(km.labels, d[near].argmin(1))


def flip_diagnostics(det: dict[str, np.ndarray], labels: np.ndarray, perm: np.ndarray, n_landmarks: int,
                     ds: ArrayDataset, radius: float = 0.1) -> dict[str, float]:
    """How well the discovered landmarks and their flip permutation match the ground truth
    of ``ds`` (the images ``det`` was detected on): each detection takes the nearest
    visible ground-truth landmark within ``radius`` x sqrt(wh) of its image; each
    discovered landmark stands for its most frequent one (``landmark_purity``: the mean
    share of its detections that carry it); ``flip_perm_accuracy`` is the share of
    discovered landmarks whose flip partner stands for the mirrored ground-truth landmark,
    ``flip_identity_accuracy`` the same for "no flip pairs" (the floor to beat)."""
    if len(det["ids"]) == 0:
        return {"landmark_purity": float("nan"), "flip_perm_accuracy": float("nan"),
                "flip_identity_accuracy": float("nan")}
    ids = det["ids"]
    gt_ids = CL.nearest_landmark(det["points"], ds.keypoints[ids], ds.visibility[ids] > 0,
                                 radius * sqrt_wh(ds)[ids])
    dominant, purity = CL.cluster_identity(labels, gt_ids, n_landmarks)
    gt_perm = ds.spec.flip_permutation()
    return {"landmark_purity": float(purity.mean()),
            "flip_perm_accuracy": CL.flip_permutation_accuracy(perm, dominant, gt_perm),
            "flip_identity_accuracy": CL.flip_permutation_accuracy(np.arange(n_landmarks), dominant, gt_perm)}


def sift_descriptors(images: np.ndarray, ids: np.ndarray, points: np.ndarray, size: float = 8.0) -> np.ndarray:
    """OpenCV SIFT descriptors (128-d, L2-normalised) of ``images[ids[i]]`` at ``points[i]``
    (image px), keypoint diameter ``size`` px: the generic-detector descriptor to compare with."""
    import cv2

    sift = cv2.SIFT_create()
    out = np.zeros((len(ids), 128), np.float32)
    for i, (j, (x, y)) in enumerate(zip(ids, points)):
        gray = cv2.cvtColor(np.ascontiguousarray(images[j]), cv2.COLOR_RGB2GRAY)
        kps, d = sift.compute(gray, [cv2.KeyPoint(float(x), float(y), float(size))])
        if d is not None and len(d):
            out[i] = d[0] / max(float(np.linalg.norm(d[0])), 1e-6)
    return out


def descriptor_embeddings(det: dict[str, np.ndarray], ds: ArrayDataset, n: int = 400, radius: float = 0.1,
                          seed: int = 0) -> dict[str, Any]:
    """Fig. 5.8-style comparison of our descriptors with SIFT's at the same detections: for up to
    ``n`` detections within ``radius`` x sqrt(wh) of a visible ground-truth landmark, 1-NN accuracy
    of the ground-truth landmark identity in each descriptor space, and 2-D t-SNE embeddings
    (scikit-learn, perplexity 30, PCA init, ``seed``) for the picture."""
    from sklearn.manifold import TSNE

    empty = {"nn_acc_ours": float("nan"), "nn_acc_sift": float("nan")}
    if len(det["ids"]) == 0:
        return empty
    ids = det["ids"]
    gt_ids = CL.nearest_landmark(det["points"], ds.keypoints[ids], ds.visibility[ids] > 0, radius * sqrt_wh(ds)[ids])
    sel = np.flatnonzero(gt_ids >= 0)
    if len(sel) < 10:
        return empty
    rng = np.random.default_rng(seed)
    sel = np.sort(rng.choice(sel, size=min(n, len(sel)), replace=False))
    ours = det["desc"][sel]
    sift = sift_descriptors(ds.images, ids[sel], det["points"][sel])
    lab = gt_ids[sel]
    from ..metrics import knn_accuracy

    out: dict[str, Any] = {"nn_acc_ours": knn_accuracy(ours, lab), "nn_acc_sift": knn_accuracy(sift, lab),
                           "tsne_labels": lab.tolist()}
    perplexity = float(min(30.0, (len(sel) - 1) / 3))
    for name, x in (("ours", ours), ("sift", sift)):
        e = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        out[f"tsne_{name}"] = np.round(e, 2).tolist()
    return out


def _concat(a: ArrayDataset, b: ArrayDataset) -> ArrayDataset:
    return dataclasses.replace(
        a, images=np.concatenate([a.images, b.images]), keypoints=np.concatenate([a.keypoints, b.keypoints]),
        visibility=np.concatenate([a.visibility, b.visibility]), bbox=np.concatenate([a.bbox, b.bbox]),
        labels=None if a.labels is None or b.labels is None else np.concatenate([a.labels, b.labels]),
        meta={k: np.concatenate([a.meta[k], b.meta[k]]) for k in a.meta if k in b.meta})


def _label_arrays(det: dict[str, np.ndarray], labels: np.ndarray, n_slots: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, n_slots, 2) points and (N, n_slots) visibility from per-detection labels (-1 = none)."""
    n = det["n_images"]
    kp = np.zeros((n, n_slots, 2), np.float32)
    vis = np.zeros((n, n_slots), np.float32)
    ok = labels >= 0
    kp[det["ids"][ok], labels[ok]] = det["points"][ok]
    vis[det["ids"][ok], labels[ok]] = 1.0
    return kp, vis


def initial_keypoints(ds: ArrayDataset, o: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Warm-up keypoints (N, init_points, 2) + visibility: a classical detector (+ ANMS) or
    ``gt_mix``: each slot is, with probability ``real_fraction``, a distinct visible
    ground-truth landmark moved by up to 3/256 of the image side, else a uniform random
    point of the image (TPAMI Sec. 5.1)."""
    n, p = len(ds), o.init_points
    kp = np.zeros((n, p, 2), np.float32)
    vis = np.zeros((n, p), np.float32)
    h, w = ds.image_size
    if o.init == "gt_mix":
        rng = np.random.default_rng([seed, 7])
        jitter = 3.0 * max(h, w) / 256.0
        for i in range(n):
            real = np.flatnonzero(ds.visibility[i] > 0)
            rng.shuffle(real)
            is_real = rng.random(p) < o.real_fraction
            ri = 0
            for s in range(p):
                if is_real[s] and ri < len(real):
                    kp[i, s] = ds.keypoints[i, real[ri]] + rng.uniform(-jitter, jitter, 2)
                    ri += 1
                else:
                    kp[i, s] = rng.uniform([0, 0], [w - 1, h - 1])
                vis[i, s] = 1.0
        kp[..., 0] = np.clip(kp[..., 0], 0, w - 1)
        kp[..., 1] = np.clip(kp[..., 1], 0, h - 1)
        return kp, vis
    from ..keypoints import detect_dataset

    for i, (pts, _) in enumerate(detect_dataset(ds, o.init, max_points=p, progress=False)):
        kp[i, :len(pts)] = pts
        vis[i, :len(pts)] = 1.0
    return kp, vis


# ---------------------------------------------------------------------------
# stage 2
# ---------------------------------------------------------------------------

@register
class ClusteringLandmarks(HeatmapMethod):
    """Stage 2: K-channel heatmap detector on the stage-1 landmark pseudo-labels."""

    name = "clustering_landmarks"
    version = "6"  # 2: stage-1 teacher v2; 3: k-means++ seeding in float32; 4: flip/purity diagnostics;
    # 5: per-image forward NME (CED curves); 6: descriptor 1-NN accuracy and t-SNE vs SIFT
    loss_names = ("heatmap",)
    default_weights = {"heatmap": 1.0}

    @dataclass(frozen=True)
    class Options:
        teacher: dict[str, Any] = spec(default_factory=dict, help="the stage-1 run config (final round)")
        flip_train: bool = spec(True, help="flip augmentation with the recovered flip permutation")
        flip_test: bool = spec(True, help="average the prediction with that of the mirrored image")
        n_regress: int = spec(300, range=(10, None))

        def validate(self) -> None:
            if not self.teacher:
                raise ConfigError("teacher: the stage-1 run config is required")

    def teacher_config(self) -> RunConfig:
        return run_config_from_dict(self.options.teacher, "method_options.teacher")

    @classmethod
    def prepare_data(cls, config: RunConfig, data: Any, device: torch.device) -> Any:
        o = config.options()
        tcfg = run_config_from_dict(o.teacher, "method_options.teacher")
        if tcfg.method != ClusteringCorrespondence.name:
            raise ConfigError(f"method_options.teacher.method must be {ClusteringCorrespondence.name!r}")
        teacher = _teacher(tcfg)
        to = teacher.options
        train = data.labeled if data.unlabeled is None else _concat(data.labeled, data.unlabeled)
        det = teacher.detect_and_describe(train.images)
        res = teacher.cluster(det, n_first=min(to.cluster_images, len(train)), first_round=False)
        nl = res.landmark_centroids.shape[0]
        kp, vis = _label_arrays(det, res.landmark_labels, nl)
        # flip correspondence: clusters of the mirrored descriptors at the mirrored points
        mlab, _ = CL.assign(det["mirrored"], res.landmark_centroids) if len(det["ids"]) else (np.zeros(0, int), None)
        perm = CL.flip_permutation(res.landmark_labels, mlab, nl)
        pairs = CL.flip_pairs(perm) if o.flip_train or o.flip_test else ()
        _FLIP_DIAG[_key(config)] = {**flip_diagnostics(det, res.landmark_labels, perm, nl, train),
                                    **descriptor_embeddings(det, train, seed=config.seed)}
        spec_ = DatasetSpec(name=f"{train.spec.name}-landmarks", keypoint_names=tuple(f"l{i}" for i in range(nl)),
                            flip_pairs=pairs, normaliser="bbox")
        pseudo = ArrayDataset(spec=spec_, images=train.images, keypoints=kp, visibility=vis, bbox=train.bbox, meta={})
        _WARM_START[_key(config)] = {k: v.detach().cpu().clone() for k, v in teacher.module.backbone.state_dict().items()}
        return dataclasses.replace(data, labeled=pseudo, unlabeled=None)

    def build(self) -> nn.Module:
        m = self.config.model
        net = build_model(m.name, self.spec.num_keypoints, width=m.width, heatmap_stride=m.heatmap_stride, **m.options)
        state = _WARM_START.pop(_key(self.config), None)
        if state is not None:
            net.backbone.load_state_dict(state)
        self._reference: ArrayDataset | None = None
        self._flip_diag = _FLIP_DIAG.pop(_key(self.config), {})
        return net

    def sample_augmentation(self, batch: int):
        if self.options.flip_train:
            return super().sample_augmentation(batch)
        a = self.config.train.augment
        aff = geometry.sample_affine(batch, self.image_size, rotation=a.rotation, scale=a.scale,
                                     translation=a.translation, generator=self.generator)
        return aff.to(self.device), torch.zeros(batch, dtype=torch.bool, device=self.device)

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> dict[str, torch.Tensor]:
        loss, out = self.supervised_loss(labeled)
        self.diagnostics["peak"] = float(out["heatmaps"].detach().amax(dim=(2, 3)).mean())
        return {"heatmap": loss}

    @torch.no_grad()
    def predict_flip(self, images: torch.Tensor, flip_test: bool) -> tuple[torch.Tensor, torch.Tensor]:
        was = self.module.training
        self.module.eval()
        hm = self.module(images)["heatmaps"]
        if flip_test:
            hf = self.module(torch.flip(images, dims=[3]))["heatmaps"]
            perm = torch.as_tensor(self.spec.flip_permutation(), device=hm.device)
            hm = 0.5 * (hm + torch.flip(hf, dims=[3])[:, perm])
        self.module.train(was)
        pts, conf = heatmaps.decode_argmax(hm, subpixel=True)
        return heatmaps.heatmap_to_image(pts, self.image_size, self.heatmap_size), conf

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.predict_flip(images, self.options.flip_test)

    def _predict_set(self, ds: ArrayDataset, flip_test: bool) -> np.ndarray:
        out = []
        for s in range(0, len(ds), 256):
            x = torch.from_numpy(np.ascontiguousarray(ds.images[s:s + 256].transpose(0, 3, 1, 2))).to(self.device)
            p, _ = self.predict_flip(x.float().div_(255.0), flip_test)
            out.append(p.cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def evaluate(self, ds: ArrayDataset, device: torch.device) -> dict[str, Any]:
        from ..metrics import hungarian_accuracy

        if self._reference is None:
            from ..train import load_run_data

            d = load_run_data(self.config.data)
            train = d.labeled if d.unlabeled is None else _concat(d.labeled, d.unlabeled)
            self._reference = train.subset(np.arange(min(self.options.n_regress, len(train))))
        ref = self._reference
        out: dict[str, Any] = {}
        for tag, ft in (("noflip", False), ("flip", True)):
            r = regression_metrics(self._predict_set(ref, ft), ref, self._predict_set(ds, ft), ds,
                                    self.options.n_regress, self.config.seed, "mean")
            out[f"fnme_{tag}"], out[f"bnme_{tag}"] = r["fnme"], r["bnme"]
            if ft == self.options.flip_test:
                out.update(r)
        out["flip_gain"] = out["fnme_noflip"] - out["fnme_flip"]  # > 0: test-time flipping helps
        pred = self._predict_set(ds, self.options.flip_test)
        acc = hungarian_accuracy(pred, ds.keypoints, ds.visibility, 0.1 * sqrt_wh(ds))
        out["accuracy"] = float(acc["accuracy"])
        out["ppe"] = float(self.spec.num_keypoints)
        out["flip_pairs"] = float(len(self.spec.flip_pairs))
        out.update(self._flip_diag)
        return out
