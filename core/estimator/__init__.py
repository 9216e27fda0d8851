"""Single-frame pose estimators that run on real pictures: BlazePose (``blazepose``),
its geometry (``geometry``) and the frame readers (``video``)."""
