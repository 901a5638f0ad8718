"""A contrast's permutation test, as the plan decided it, set up on the workflow's files
(the design layer's view of :mod:`..stats.permutation`)."""

from functools import partial

import numpy as np

from ..io.errors import bad_input
from ..io.masked_data import masked_data_shape, read_voxel_chunk
from ..io.tables import read_design
from ..stats import permutation as perm
from ..stats.spatial import TFCE_E, TFCE_H
from .plan import Permutations


class PermutationTest:
    """One contrast's permutation test, on the design matrix and the masked data file.

    ``contrast`` is a :class:`~.plan.Contrast` of the plan as a dict (label, weights,
    kind, and its ``permutations``: model, scheme, patterns, pairs, tail, cluster-forming
    threshold): nothing is chosen here, the model's data are only prepared. Gives the
    label, rows and kind, the permutation model, the data as voxel columns (paired
    differences for the paired model), the scheme and the plan of patterns.
    """

    def __init__(self, design_matrix, data_file, contrast):
        design, X = read_design(design_matrix)
        test = Permutations(**contrast["permutations"])
        self.label, self.kind = contrast["label"], contrast["kind"]
        self.rows = np.asarray(contrast["weights"], dtype=float)
        self.weights = [{str(c): float(w) for c, w in zip(design.columns, row)}
                        for row in self.rows]
        n_maps, n_voxels = masked_data_shape(data_file)
        if n_maps != len(design):
            raise bad_input(f"data file {data_file}",
                            f"{n_maps} rows but the design has {len(design)}")
        columns = perm.VoxelColumns(n_maps, n_voxels, partial(read_voxel_chunk, data_file),
                                    8 * n_maps)
        if test.model == "paired":
            first, second = (np.asarray(rows, dtype=int) for rows in test.pairs)
            columns = columns.differences(first, second)
            self.model = perm.one_sample_model(first.size)
        else:
            try:
                self.model = perm.linear_model(X, self.rows)
            except ValueError as err:
                raise bad_input(f"contrast {self.label}", str(err)) from err
        self.columns = columns
        self.test = test
        self.scheme = test.scheme
        self.plan = test.patterns()
        self.n_blocks = None if self.plan.blocks is None else max(self.plan.blocks) + 1

    def options(self, correction):
        """PermutationOptions of ``correction``, and the cluster-forming (p, value)."""
        forming = None if self.test.cluster_forming is None else tuple(self.test.cluster_forming)
        options = perm.PermutationOptions(
            tail=self.test.tail, cluster_threshold=None if forming is None else forming[1],
            tfce=correction == "tfce", tfce_E=TFCE_E, tfce_H=TFCE_H)
        return options, forming
