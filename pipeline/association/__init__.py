"""Cross-camera association of tracklets into global identities."""

from pipeline.association.offline import (
    OfflineAssociator,
    appearance_distance,
    average_linkage,
    cannot_link_matrix,
)
from pipeline.association.online import OnlineAssociator, Revision

ASSOCIATORS: dict[str, type] = {"offline": OfflineAssociator, "online": OnlineAssociator}
"""Association modes by name (config ``association: {mode: ...}``)."""

__all__ = [
    "ASSOCIATORS",
    "OfflineAssociator",
    "OnlineAssociator",
    "Revision",
    "appearance_distance",
    "average_linkage",
    "cannot_link_matrix",
]
