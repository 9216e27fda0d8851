"""Models: ``classifier`` (ResNet-50 + keypoint head, the paper's presets) and
``temporal`` (heatmap refinement over 5-frame windows).

Each submodule exposes ``rebuild_from_run(run, device)``, which ``core.runs.load_model``
dispatches to; nothing else rebuilds a model from disk.
"""
