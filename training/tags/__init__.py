"""Image-level tags -> pseudo-labels for a segmenter.

Rooms: ``targets`` (which class is background; tags as the classifier's multi-hot targets),
``cam`` (multi-scale class activation maps of a trained classifier, their files on disk),
``seeds`` (CAMs -> seeds with an ignore band, optional dense-CRF refinement, threshold sweep),
``evaluate`` (the classifier's tag mAP / F1 on a split). SEC's seed / expand / constrain losses
are losses and live in `wsdeploy.training.losses.sec`.
"""
