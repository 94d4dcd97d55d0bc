"""Issue 16, item 15: the shipped model card carries no developer's absolute path."""
from __future__ import annotations

import json
import re

from wsdeploy.checkpoint import read_checkpoint
from wsdeploy.runtime import DEFAULT_MODEL_PATH


def test_bundled_card_has_no_absolute_path():
    card, _ = read_checkpoint(DEFAULT_MODEL_PATH)
    text = json.dumps(card.to_dict())
    absolute = sorted(set(re.findall(r'"((?:/|[A-Za-z]:\\\\)[^"]+)"', text)))
    assert not absolute, absolute
