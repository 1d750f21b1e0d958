"""The first weights of an `anchor` predictor, which come from the space itself (its text tower's
class prompts), so they are set when a run starts, after its base is attached."""

from __future__ import annotations

from anybind.errors import ConfigError
from anybind.recipes.evaluate import class_embeddings
from anybind.space import Space


def init_anchor_predictor(space: Space) -> None:
    """An `anchor` predictor's keys and first values: the class prompts through the text
    tower, prompted as the source modality (keys) and as the target (values)."""
    predictor = space.config.predictor
    if predictor is None or predictor.kind != "anchor" or space.predictor is None:
        return
    text = next((m for m, t in space.towers.items() if t.modality.name == "text"), None)
    names = space.config.data.class_names
    if text is None or not names:
        raise ConfigError("an 'anchor' predictor needs a text tower and class names",
                          key="predictor.kind")  # fmt: skip
    ev = space.config.eval
    for m in predictor.modalities:
        others = [o for o in predictor.modalities if o != m]
        source = ev.templates.get(others[0], ev.default_templates) if len(others) == 1 else None
        keys = class_embeddings(space, names, source or ev.default_templates, text)
        values = class_embeddings(space, names, ev.templates.get(m, ev.default_templates), text)
        space.predictor.nets[m].set_prompts(keys, values)  # type: ignore[operator]
