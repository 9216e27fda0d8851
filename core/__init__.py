"""PoseLab core: data, models, training, evaluation, runs and saliency.

The dashboard (``dashboard.py``, ``pages/``) and the command line (``python -m core``)
are thin layers over this package.
"""
__version__ = "0.1.0"
