"""The two reserved label values (DESIGN.md "Data formats"), defined once.

`IGNORE_LABEL` 255 marks pixels without a label: unlabelled pixels of a scribble map, void in a
dense mask (PASCAL VOC convention). `PAD_LABEL` 254 marks pixels that augmentation added by
padding, so losses can tell padding (no image there) from unlabelled pixels (image, no label).
Class indices are therefore at most 253.
"""

__all__ = ["IGNORE_LABEL", "PAD_LABEL"]

IGNORE_LABEL = 255
PAD_LABEL = 254
