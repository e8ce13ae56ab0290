"""The one named joint set every backend produces (``BODY_JOINTS``) and its bones.

Backends map their native keypoints onto these names; everything downstream (clips, world alignment, quality,
retargeting) indexes joints by name through :func:`joint_index`, never by raw number.

Conventions of the points (approximate anatomical landmarks, not SMPL joint centres):
- ``pelvis``: midpoint of the two hips; the root of the skeleton.
- ``neck``: midpoint of the two shoulders.
- ``head``: centre of the head (midpoint of the ears for MediaPipe; H36M head for 4D-Humans).
- ``*_heel`` / ``*_toe``: the two foot contact points (toe = big toe / foot index tip).
"""

from __future__ import annotations

import numpy as np

BODY_JOINTS: tuple[str, ...] = (
    "pelvis",  # 0
    "left_hip",  # 1
    "right_hip",  # 2
    "left_knee",  # 3
    "right_knee",  # 4
    "left_ankle",  # 5
    "right_ankle",  # 6
    "left_heel",  # 7
    "right_heel",  # 8
    "left_toe",  # 9
    "right_toe",  # 10
    "neck",  # 11
    "head",  # 12
    "nose",  # 13
    "left_shoulder",  # 14
    "right_shoulder",  # 15
    "left_elbow",  # 16
    "right_elbow",  # 17
    "left_wrist",  # 18
    "right_wrist",  # 19
)

JOINT_SET_NAME = "g1forge_body20"

#: Foot contact points, used for ground estimation, contact and sliding.
FOOT_JOINTS: tuple[str, ...] = ("left_heel", "left_toe", "right_heel", "right_toe")

#: Bones (parent, child) whose length should be constant over a clip.
BONES: tuple[tuple[str, str], ...] = (
    ("left_hip", "left_knee"),
    ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"),
    ("right_knee", "right_ankle"),
    ("left_shoulder", "left_elbow"),
    ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"),
    ("right_elbow", "right_wrist"),
    ("left_hip", "right_hip"),
    ("left_shoulder", "right_shoulder"),
    ("pelvis", "neck"),
)

_INDEX = {name: i for i, name in enumerate(BODY_JOINTS)}


def joint_index(*names: str) -> list[int]:
    """Indices of ``names`` in :data:`BODY_JOINTS`; raises ``KeyError`` naming the valid joints."""
    try:
        return [_INDEX[n] for n in names]
    except KeyError as exc:
        raise KeyError(f"unknown joint {exc.args[0]!r}; valid joints: {', '.join(BODY_JOINTS)}") from None


def averaging_matrix(source_index: dict[str, int], body_from_source: dict[str, tuple[str, ...]],
                     num_source: int) -> tuple[np.ndarray, np.ndarray]:
    """How a backend's native keypoints become :data:`BODY_JOINTS`.

    source_index: native keypoint name -> row in the backend's (S, ...) arrays.
    body_from_source: each body joint -> the native keypoints whose mean it is (e.g. pelvis = mean of two hips);
        a joint not listed is the native keypoint of the same name.
    Returns ``M`` (J, S) float64 with ``body = M @ native`` and ``pairs`` (J, 2) int64, the first and last native
    row of each joint (equal for single-keypoint joints), for taking the weaker of two confidences.
    """
    sources = {name: body_from_source.get(name, (name,)) for name in BODY_JOINTS}
    missing = sorted({s for srcs in sources.values() for s in srcs} - set(source_index))
    if missing:
        raise KeyError(f"no native keypoints named: {', '.join(missing)}")
    M = np.zeros((len(BODY_JOINTS), num_source), dtype=np.float64)
    pairs = np.zeros((len(BODY_JOINTS), 2), dtype=np.int64)
    for j, name in enumerate(BODY_JOINTS):
        rows = [source_index[s] for s in sources[name]]
        M[j, rows] = 1.0 / len(rows)
        pairs[j] = (rows[0], rows[-1])
    return M, pairs
