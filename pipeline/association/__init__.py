"""Cross-camera association of tracklets into global identities.

Both modes implement :class:`Association` and receive one :class:`AssociationRules`;
the distance between tracklets is injected (``distance``, ``terms``).
"""

from pipeline.association.base import Association, Schedule
from pipeline.association.ground import FloorCue, GroundCue, ground_distance
from pipeline.association.offline import OfflineAssociator, average_linkage
from pipeline.association.online import OnlineAssociator, OnlineOptions
from pipeline.association.rules import (
    AssociationRules,
    DistanceTerm,
    appearance_distance,
    cannot_link_matrix,
    split_params,
)
from pipeline.types import Revision

ASSOCIATORS: dict[str, type[Association]] = {"offline": OfflineAssociator,
                                              "online": OnlineAssociator}
"""Association modes by name (config ``association: {mode: ...}``)."""

__all__ = [
    "ASSOCIATORS",
    "Association",
    "AssociationRules",
    "DistanceTerm",
    "FloorCue",
    "GroundCue",
    "OfflineAssociator",
    "Schedule",
    "OnlineAssociator",
    "OnlineOptions",
    "Revision",
    "appearance_distance",
    "average_linkage",
    "cannot_link_matrix",
    "ground_distance",
    "split_params",
]
