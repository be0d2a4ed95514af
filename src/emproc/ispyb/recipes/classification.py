"""One ParticleClassificationGroup and its ParticleClassification rows, written the same way
for 2D batches (em-spa-class2d), 3D classes (em-spa-class3d) and the refined map
(em-spa-refine): PATo selects groups by `programId` and `type` ("2D"/"3D").

Natural keys: group (this or a superseded emproc program, type, batchNumber); class (group,
classNumber).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ispyb.sqlalchemy as models
import sqlalchemy as sa

from emproc.ispyb.db import upsert, upsert_children

_LINK = models.t_ParticleClassification_has_CryoemInitialModel


def write_classification(
    connection: sa.Connection,
    programs: Sequence[int],
    group_values: Mapping[str, Any],
    class_values: Sequence[Mapping[str, Any]],
    known_group_id: int | None,
    drop_other_classes: bool = False,
) -> tuple[int, dict[str, int]]:
    """Upsert the group (`group_values` holds programId, type, batchNumber) and its classes;
    returns (group id, {class number: class id}).

    `programs` = the recipe's program and the superseded ones (where a rerun finds the group).
    With `drop_other_classes`, classes of the group not in `class_values` (a rerun with fewer
    classes) are deleted with their initial-model links and B-factor fits.
    """
    group = models.ParticleClassificationGroup
    group_id = known_group_id
    if group_id is None:
        group_id = connection.execute(
            sa.select(group.particleClassificationGroupId)
            .where(
                group.programId.in_(list(programs)),
                group.type == group_values["type"],
                group.batchNumber == group_values["batchNumber"],
            )
            .order_by(group.particleClassificationGroupId)
            .limit(1)
        ).scalar()
    group_id = upsert(connection, group, group_id, group_values)
    klass = models.ParticleClassification
    class_ids, stale = upsert_children(
        connection, klass, ("particleClassificationGroupId", group_id), "classNumber", class_values
    )
    if drop_other_classes and stale:
        connection.execute(sa.delete(_LINK).where(_LINK.c.particleClassificationId.in_(stale)))
        connection.execute(
            sa.delete(models.BFactorFit).where(
                models.BFactorFit.particleClassificationId.in_(stale)
            )
        )
        connection.execute(sa.delete(klass).where(klass.particleClassificationId.in_(stale)))
    return group_id, class_ids
