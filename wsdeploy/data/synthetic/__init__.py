"""The synthetic weak-supervision benchmark: scenes with dense masks, scribbles and image tags.

    from wsdeploy.data.synthetic import generate_dataset, render_scene
    generate_dataset("data/synthetic", num_images=800, size=128, seed=1)

Rooms: ``config`` (class list, settings), ``textures`` and ``shapes`` (procedural building
blocks), ``scene`` (one scene's recipe), ``scribbles`` (simulated strokes from a dense mask),
``generate`` (the dataset folder on disk).
"""

from wsdeploy.data.synthetic.config import CLASSES, GENERATOR_VERSION, STUFF_CLASSES, THING_CLASSES, SyntheticConfig
from wsdeploy.data.synthetic.generate import generate_dataset, image_seed
from wsdeploy.data.synthetic.scene import Scene, render_scene
from wsdeploy.data.synthetic.scribbles import scribbles_from_mask

__all__ = [
    "CLASSES", "STUFF_CLASSES", "THING_CLASSES", "GENERATOR_VERSION", "SyntheticConfig", "Scene",
    "render_scene", "image_seed", "generate_dataset", "scribbles_from_mask",
]
