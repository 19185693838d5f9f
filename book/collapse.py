# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The collapsing problem of consistency-based semi-supervised pose estimation
#
# Xie et al. (ICCV 2021) add to a supervised heatmap network a *consistency*
# loss on unlabeled images: two augmentations of one image go through the
# network, and the heatmaps of one view, mapped into the other, are the target
# of the other, `L = L_s + lambda L_u`. They report that this standard recipe
# **collapses** in pose estimation (sec. 3.2, Fig. 3): within a few iterations the
# network predicts background everywhere on unlabeled images, while its
# response on labeled images keeps rising, and its validation accuracy ends far
# below the supervised model's. A smaller `lambda` only slows the collapse, and
# more labels do not prevent it. Only an *easy* teacher view, a *harder*
# student view and a stop-gradient on the teacher avoid it (sec. 3.3, Figs. 5
# and 7); thresholding the teacher by its confidence, a mean teacher and
# foreground re-weighting do not (sec. 6.3, Fig. 8).
#
# We test these claims on the procedural `figures` stick people (64x64, 14
# joints, few labels) with a small U-Net, using one method with switches
# (`landmark_study.methods.consistency`): every arm below is the same code with
# different options, and the supervised baseline is that method with
# `lambda = 0` (so it logs the same response diagnostics on unlabeled images).

# %% tags=["remove-cell"]
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from landmark_study import claims, geometry, plots
from landmark_study.config import notebook_params
from landmark_study.chapters import chapter_grid
from landmark_study.chapters.collapse import (CLAIM_ARMS, arm_options, arms, curves_frame, perturbation_frame,
                                              run_table)
from landmark_study.methods.consistency import COLLAPSE_RATIO
from landmark_study.runs import chapter_store, run_key, trained_method, weights_path
from landmark_study.sweep import run_grid
from landmark_study.train import load_run_data

plots.setup()
_before = set(globals())

# %% tags=["parameters"]
profile = "quick"
seeds = [0]
store = None
workers = 1
figure_seeds = 1
num_labels = 20
many_labels = 100
small_lambda = 0.1
thresholds = [0.2, 0.4, 0.6, 0.8]
ema_decays = [0.99, 0.999]
reweight_gain = 30.0
steps = 20
batch_size = 8
unlabeled_batch_size = 8
lr = 0.001
n_train = 200
n_val = 50
eval_size = 50
evals = 4
size = 32
dataset = "figures"
model = "unet_small"
width = 8
heatmap_stride = 2
sigma = 1.5
claim_arms = ["supervised", "naive", "supervised_many", "naive_many", "easy_easy", "easy_hard"]
pairs = ["easy_easy", "hard_hard", "hard_easy", "easy_hard"]

# %% tags=["remove-cell"]
P = notebook_params("collapse", globals(), _before)
print(f"profile={P.profile} seeds={list(P.seeds)} steps={P.steps} labels={P.num_labels}/{P.many_labels}")

# %% [markdown]
# ## How we test it
#
# Each step draws `batch_size` labeled images (with replacement) and
# `unlabeled_batch_size` unlabeled ones. For each unlabeled image, one
# horizontal flip is shared by both views, then each view gets its own random
# affine warp: *easy* is the paper's "Affine 30" (rotation uniform in ±30°,
# scale in [0.75, 1.25]), *hard* is "Affine 60" (±60°, [0.5, 1.5]). The
# teacher's heatmaps are warped into the student's view (zero padding) and the
# student regresses them (MSE); with stop-gradient the teacher branch is
# detached. Every arm logs, at each evaluation, the mean peak heatmap response
# (the maximum of each heatmap, averaged over joints and images, and over the
# steps since the previous evaluation) on the labeled images and on the
# unlabeled teacher and student views, together with validation PCK@0.1.
#
# **Collapsed**, one rule for every run: the final teacher-view response on
# unlabeled images is below 25% of its maximum over training (the first 10% of
# the steps are a burn-in, when a fresh network's responses are meaningless).
# `collapsed at` is the first evaluation where that held (the run's length when it never did).
#
# In the full profile every variant runs three seeds (`figure_seeds` in the
# parameters sets how many the variants outside `claim_arms` get; the quick
# profile runs one), and every claim rests on three seeds.

# %%
configs = chapter_grid("collapse", P)
store_ = chapter_store(P)
report = run_grid(configs, store_, workers=P.workers)
print(report.summary())
for k, e in report.failed.items():
    print("FAILED", k, e[:300])
table = run_table(P, store_)
curves = curves_frame(P, store_)
data_note = (f"`{P.dataset}` {P.size}x{P.size}, {P.num_labels} labeled + {P.n_train - P.num_labels} unlabeled "
             f"training images, {P.model} width {P.width}, {P.steps} steps of {P.batch_size}+{P.unlabeled_batch_size} "
             f"images, {P.profile} profile")
display(Markdown(f"Setting: {data_note}."))


# %%
def _mean_curve(arm, key):
    d = curves[curves.arm == arm]
    return d.groupby("step")[key].mean() if len(d) else pd.Series(dtype=float)


def response_panel(arm_names, title, axes=None):
    """Responses (labeled, teacher, student) and validation PCK per arm: thin lines per seed, bold means."""
    if axes is None:
        fig, axes = plt.subplots(2, len(arm_names), figsize=(3.0 * len(arm_names), 5.2), sharex=True,
                                 sharey="row", squeeze=False)
    colours = {"labeled": "tab:blue", "teacher": "tab:red", "student": "tab:green"}
    for j, arm in enumerate(arm_names):
        d = curves[curves.arm == arm]
        ax, ax2 = axes[0, j], axes[1, j]
        for key, col in colours.items():
            for _, g in d.groupby("seed"):
                ax.plot(g.step, g[key], color=col, alpha=0.25, lw=0.8)
            m = _mean_curve(arm, key)
            ax.plot(m.index, m.values, color=col, lw=2, label=key)
        for _, g in d.groupby("seed"):
            ax2.plot(g.step, g["val pck@0.1"], color="k", alpha=0.3, lw=0.8)
        m = _mean_curve(arm, "val pck@0.1")
        ax2.plot(m.index, m.values, color="k", lw=2)
        sup = _mean_curve("supervised", "val pck@0.1")
        if arm != "supervised" and len(sup):
            ax2.plot(sup.index, sup.values, color="gray", ls="--", lw=1.2, label="supervised")
        n = d.seed.nunique()
        ax.set_title(f"{arm}\n({n} seed{'s' if n != 1 else ''})", fontsize=9)
        ax2.set_xlabel("step")
    axes[0, 0].set_ylabel("mean peak response")
    axes[1, 0].set_ylabel("val PCK@0.1")
    axes[0, 0].legend(fontsize=7)
    if len(arm_names) > 1:
        axes[1, 1].legend(fontsize=7)
    plt.suptitle(title, fontsize=10)
    plt.tight_layout()
    return axes


def verdict_line(arm):
    t = table[table.arm == arm]
    if not len(t):
        return f"`{arm}`: not run"
    return (f"`{arm}`: {int(t.collapsed.sum())} of {len(t)} runs collapsed; final unlabeled response "
            f"{t['peak teacher'].mean():.3f} (labeled {t['peak labeled'].mean():.3f}), collapse ratio "
            f"{t['collapse ratio'].mean():.2f}, test PCK@0.1 {t['pck@0.1'].mean():.3f}")


# %% [markdown]
# ## 1. Naive consistency against supervised training (Fig. 3)
#
# The standard recipe: the same easy augmentation for both views, the same
# network as teacher, gradients through both branches, `lambda = 1`.

# %%
response_panel(["supervised", "naive"], f"Fig. 3 analogue: {data_note}")
plt.show()

# %%
display(Markdown("\n".join(f"- {verdict_line(a)}" for a in ("supervised", "naive"))))

# %% [markdown]
# ## 2. Is it over-fitting? Smaller lambda, many more labels (sec. 3.2)
#
# If the collapse were over-fitting to a small labeled set, more labels would
# cure it; the paper reports that they do not (the response still decays and
# the accuracy stays below the supervised model's), and that a smaller `lambda`
# only slows the collapse down.

# %%
response_panel(["naive_small_lambda", "supervised_many", "naive_many"],
               f"lambda = {P.small_lambda:g} ({P.num_labels} labels); {P.many_labels} labels with lambda 0 and 1. "
               f"{P.profile} profile")
plt.show()

# %%
display(Markdown("\n".join(f"- {verdict_line(a)}" for a in ("naive", "naive_small_lambda", "supervised_many",
                                                            "naive_many"))
                 + "\n\n`collapsed at` (mean over seeds, censored at the run length "
                 f"{P.steps}): naive {table[table.arm == 'naive']['collapsed at'].mean():.0f}, "
                 f"lambda {P.small_lambda:g}: {table[table.arm == 'naive_small_lambda']['collapsed at'].mean():.0f}."))

# %% [markdown]
# ## 3. Which augmentation is easy? (Fig. 5, left)
#
# The paper calls `T_e` easier than `T_h` when a trained network is more
# accurate on images perturbed by `T_e`. We evaluate the final supervised
# models on the test images under fixed perturbations (the same perturbed
# images for every model): Affine 30, Affine 60, Joint Cutout of 5 joints
# (rectangles of half-size 3-6 px around 5 ground-truth joints, filled with
# the mean colour) and both.

# %%
pf = perturbation_frame(P, store_)
if len(pf):
    order = ["none", "affine30", "affine60", "jc5", "affine60+jc5"]
    agg = pf.groupby("perturbation")["pck@0.1"].agg(["mean", "std", "count"]).reindex(order)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.bar(agg.index, agg["mean"], yerr=agg["std"].fillna(0), color="tab:purple", alpha=0.8, capsize=3)
    for _, g in pf.groupby("seed"):
        ax.plot([order.index(x) for x in g.perturbation], g["pck@0.1"], "k.", ms=4)
    ax.set_ylabel("test PCK@0.1")
    ax.set_title(f"supervised model under perturbation ({pf.seed.nunique()} seeds; {P.profile} profile)", fontsize=9)
    plt.show()
    display(agg.round(3))

# %% [markdown]
# ## 4. Easy-hard pairs (Fig. 5 right, Fig. 7)
#
# Teacher view / student view, always with stop-gradient: easy-easy,
# hard-hard, hard-easy, easy-hard, and easy-hard *without* stop-gradient
# (the paper: removing the detach collapses regardless of the augmentations).

# %%
pair_arms = list(P.pairs) + ["easy_hard_no_sg"]
response_panel(pair_arms, f"teacher_student pairs; {data_note}")
plt.show()

# %% [markdown]
# ## 5. Failed attempts (Fig. 8)
#
# Each is added to the easy-easy pair with stop-gradient (no easy-hard gap):
# confidence thresholds on the teacher's peak (A1-A4), a mean teacher with EMA
# 0.99 / 0.999 (B1-B2) and foreground re-weighting of pixels by the teacher's
# response (C, weight `1 + gain * teacher`).

# %%
failed = [f"threshold_{t:g}" for t in P.thresholds] + [f"ema_{a:g}" for a in P.ema_decays] + ["reweight"]
response_panel(failed, f"failed attempts on easy-easy + stop-gradient; {data_note}")
plt.show()

# %%
fa = table[table.arm.isin(failed + ["easy_easy", "easy_hard"])]
if len(fa):
    order = ["easy_easy"] + failed + ["easy_hard"]
    agg = fa.groupby("arm")["pck@0.1"].agg(["mean", "std"]).reindex(order)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(range(len(order)), agg["mean"], yerr=agg["std"].fillna(0), capsize=3,
           color=["tab:gray"] + ["tab:orange"] * len(failed) + ["tab:green"])
    sup = table[table.arm == "supervised"]["pck@0.1"].mean()
    ax.axhline(sup, color="k", ls="--", lw=1, label="supervised")
    ax.set_xticks(range(len(order)), order, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test PCK@0.1")
    ax.legend(fontsize=8)
    ax.set_title(f"Fig. 8 analogue: final test PCK@0.1 (mean ± sd over seeds; {P.profile} profile)", fontsize=9)
    plt.show()

# %% [markdown]
# ## Verdicts, run by run
#
# The collapse rule applied to every run (seeds as columns), and the mean of
# each arm's final numbers.

# %%
if len(table):
    grid_v = table.pivot_table(index="arm", columns="seed", values="collapse ratio", aggfunc="first")
    grid_v = grid_v.reindex([a for a in arm_options(P) if a in grid_v.index])
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * grid_v.shape[1], 0.32 * len(grid_v) + 1.0))
    ax.imshow(grid_v.values < COLLAPSE_RATIO, cmap="RdYlGn_r", vmin=-0.5, vmax=1.5, aspect="auto")
    for (i, j), v in np.ndenumerate(grid_v.values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(grid_v)), grid_v.index, fontsize=8)
    ax.set_xticks(range(grid_v.shape[1]), [f"seed {s}" for s in grid_v.columns], fontsize=8)
    ax.set_title(f"final/max unlabeled response (red: collapsed, < {COLLAPSE_RATIO})", fontsize=9)
    plt.show()
    summary = (table.groupby("arm")[["pck@0.1", "best val pck@0.1", "peak labeled", "peak teacher",
                                     "collapse ratio", "collapsed at", "ms/step"]].mean()
               .join(table.groupby("arm")["collapsed"].agg(lambda s: f"{int(s.sum())}/{len(s)}"))
               .reindex([a for a in arm_options(P) if a in set(table.arm)]).round(3))
    display(summary)

# %% [markdown]
# ## Heatmaps on one unlabeled image
#
# The heatmaps (maximum over the joints, colour scale 0 to 1) of the final supervised, naive and easy-hard
# models of the first seed on one unlabeled training image: the supervised
# model never collapsed, the naive one is shown after its training. Shown only
# when the runs' weights are on this machine (they are not part of the
# committed results).

# %%
show = ["supervised", "naive", "easy_hard"]
cfgs = {a: arms(P)[a][0] for a in show}
if all(weights_path(run_key(c)).exists() for c in cfgs.values()):
    unl = load_run_data(cfgs["naive"].data).unlabeled
    img = torch.from_numpy(unl.images[:1].transpose(0, 3, 1, 2).copy()).float() / 255.0
    fig, axes = plt.subplots(1, len(show) + 1, figsize=(2.4 * (len(show) + 1), 2.6))
    axes[0].imshow(unl.images[0]); axes[0].set_title("unlabeled image", fontsize=8)
    for ax, a in zip(axes[1:], show):
        m = trained_method(cfgs[a], store_)
        with torch.no_grad():
            hm = m.module(img)["heatmaps"][0]
        ax.imshow(hm.clamp(0, 1).amax(0).numpy(), cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"{a}: peak {float(hm.max()):.2f}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    plt.suptitle(f"seed {cfgs['naive'].seed}; {data_note}", fontsize=8)
    plt.show()
else:
    display(Markdown("_The runs' weights are not on this machine; the heatmap figure is skipped._"))

# %% [markdown]
# ## Claims
#
# Each claim compares arms over seeds by the stated rule (95% bootstrap
# intervals); a verdict needs at least 3 seeds, so the quick profile reads
# "inconclusive". Our numbers are PCK@0.1 on `figures` and response ratios;
# the paper's are COCO AP at 256x192 with ResNet-18 SimpleBaseline: not comparable.

# %%
ct = claims.claims_table("collapse", profile=P.profile, store=store_)
display(Markdown(claims.markdown_table(ct)))

# %%
n_rep = int((ct.verdict == "reproduced").sum()) if len(ct) else 0
display(Markdown(
    f"Profile `{P.profile}`: {n_rep} of {len(ct)} claims reproduced on `figures`. "
    + ("These are the book's numbers." if P.profile != "quick" else
       "A smoke test with a few steps: the numbers mean nothing at this scale.")))
