"""Cross-camera association of tracklets into global identities."""

from pipeline.association.offline import (
    ASSOCIATORS,
    OfflineAssociator,
    appearance_distance,
    cannot_link_matrix,
)

__all__ = ["ASSOCIATORS", "OfflineAssociator", "appearance_distance", "cannot_link_matrix"]
