"""PoseLab dashboard: `streamlit run dashboard.py`.

This file only wires the pages together (st.navigation) and draws the shared sidebar
(runs folder, run picker). Each page is one file in pages/; compute lives in core/.
Runs are read from $POSELAB_RUNS when set, else from checkpoints/.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:          # `core` and `pages` import from the repo root
    sys.path.insert(0, str(ROOT))

from core import ui  # noqa: E402

st.set_page_config(page_title="PoseLab", page_icon=":material/accessibility_new:", layout="wide")

# (file, title, icon, run kind the page shows: drives the sidebar's run picker)
PAGES = [
    ("pages/home.py", "Home", ":material/home:", None),
    ("pages/runs.py", "Runs", ":material/table_chart:", None),
    ("pages/samples.py", "Samples", ":material/photo_library:", "classifier"),
    ("pages/confusion.py", "Confusion matrix", ":material/grid_on:", "classifier"),
    ("pages/saliency.py", "Saliency", ":material/visibility:", "classifier"),
    ("pages/pck.py", "PCK comparison", ":material/query_stats:", "temporal"),
    ("pages/sequences.py", "Sequences", ":material/movie:", "temporal"),
]

pages = [st.Page(path, title=title, icon=icon, default=(i == 0))
         for i, (path, title, icon, _) in enumerate(PAGES)]
current = st.navigation(pages)
kind = {title: k for _, title, _, k in PAGES}.get(current.title)

st.sidebar.title("PoseLab")
# A run interrupted by a newer one (a click while a saliency map computes) may not get
# to clear the flag in its `finally`, so it is cleared before drawing as well.
st.session_state.pop(ui.SIDEBAR_DRAWN, None)
with ui.guard():
    ui.sidebar(kind)
st.session_state[ui.SIDEBAR_DRAWN] = True   # pages' own sidebar() calls now only read
try:
    current.run()
finally:                                        # also on st.rerun / st.stop / switch_page
    st.session_state.pop(ui.SIDEBAR_DRAWN, None)
