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
# # Scorecard: every claim, paper versus ours
#
# Each chapter tests a handful of the claims its paper makes. This page gathers
# them. Nothing here is typed in by hand except the papers' own numbers (kept
# with table and page in `params/claims/<chapter>.yaml`): every verdict is
# computed now, from the runs the chapters stored, by the rule written beside
# it. A claim whose runs are missing shows as *not run*; one whose runs exist but give no
# number (e.g. a detector that detected nothing has no precision) as *undefined*; one whose runs were
# made by an older version of the method shows as *stale*, never as a verdict.
#
# How to read a verdict. Our numbers are means over seeds with their spread, on
# the book's procedurally generated data at CPU scale, never on the papers'
# datasets. *Reproduced* means the 95% bootstrap interval (over seeds) of the
# quantity the rule names lies on the paper's side; *not reproduced* means it
# lies on the other side (or, where a rule states a smallest meaningful effect,
# below it); *inconclusive* means the interval straddles the boundary, or there
# were fewer than three seeds. A verdict is about the *direction* of a claim in
# our setting, not about the paper's absolute numbers.

# %% tags=["remove-cell"]
import pandas as pd
from IPython.display import Markdown, display

from landmark_study import claims
from landmark_study.config import notebook_params

_before = set(globals())

# %% tags=["parameters"]
profile = "quick"

# %% tags=["remove-cell"]
P = notebook_params("scorecard", globals(), _before)
files = [cf for cf in claims.claims_files() if not P.chapters or cf.chapter in P.chapters]
table = claims.claims_table(profile=P.profile) if files else pd.DataFrame(columns=claims.COLUMNS)
if P.chapters:
    table = table[table.chapter.isin(P.chapters)]
print(f"profile={P.profile}: {len(files)} claims files, {len(table)} claims")

# %% [markdown]
# ## Counts

# %%
c = claims.counts(table)
display(Markdown(
    f"Profile **{P.profile}**: {c['claims']} claims; {c['tested']} tested "
    f"({c['reproduced']} reproduced, {c['not reproduced']} not reproduced, {c['inconclusive']} inconclusive); "
    f"{c['undefined']} undefined (runs exist, the metric does not, e.g. no detections); "
    f"{c['not run']} not run, {c['stale']} stale."))

# %% [markdown]
# ## Every claim, grouped by paper

# %%
for cf in files:
    rows = table[table.chapter == cf.chapter]
    display(Markdown(f"### {cf.paper}\n\nChapter: [{cf.chapter}]({cf.chapter}.ipynb)\n\n"
                     + claims.markdown_table(rows)))

# %% [markdown]
# ## What differs from the original settings
#
# Each paper's setting against ours (data, scale, architecture, schedule), as
# the chapter's claims file states it, with the paper's own numbers that the
# chapter quotes.

# %%
for cf in files:
    display(Markdown(f"### {cf.paper}\n\n{cf.differences.strip() or '_(not stated)_'}\n\n"
                     f"**The paper's numbers** (verbatim; their data and scale):\n\n{claims.published_markdown(cf)}"))

# %% [markdown]
# The same table is printed by `python -m landmark_study claims --profile full`
# (add `--format csv` or `--format json` for machines).
