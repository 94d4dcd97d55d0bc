"""Image-level tags -> pseudo-labels for a segmenter.

Rooms: ``targets`` (which class is background; tags as the classifier's multi-hot targets),
``cam`` (multi-scale class activation maps of a trained classifier, their files on disk),
``seeds`` (CAMs -> seeds with an ignore band, optional dense-CRF refinement, threshold sweep),
``evaluate`` (the classifier's tag mAP / F1 on a split); propagation (PSA / IRN):
``affinity`` (pair labels from seeds, the affinity head on the frozen classifier, its loss,
affinity checkpoints), ``random_walk`` (sparse transition matrix, T^t v), ``propagate`` (a
dataset's CAMs walked, in the CAM file format), ``relabel`` and ``self_training`` (`--rounds`),
``contrast`` (regional semantic contrast for the classifier), ``settings`` and ``tasks`` (their
trainer options and tasks). SEC's seed / expand / constrain losses are losses and live in
`wsdeploy.training.losses.sec`.
"""
