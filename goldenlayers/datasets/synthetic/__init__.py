"""The synthetic world (embedded default data) and the train-world recipe; see docs/world.md."""

from goldenlayers.datasets.synthetic.export import export_counterfact, export_knowedit
from goldenlayers.datasets.synthetic.recall import encode_queries, measure_recall, recall_hits
from goldenlayers.datasets.synthetic.tokenizer import train_tokenizer
from goldenlayers.datasets.synthetic.training import TrainSettings, train_world_model
from goldenlayers.datasets.synthetic.world import Person, World, WorldConfig, build_world

__all__ = [
    "Person",
    "TrainSettings",
    "World",
    "WorldConfig",
    "build_world",
    "encode_queries",
    "export_counterfact",
    "export_knowedit",
    "measure_recall",
    "recall_hits",
    "train_tokenizer",
    "train_world_model",
]
