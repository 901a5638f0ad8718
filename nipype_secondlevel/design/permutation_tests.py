"""A contrast's permutation test as the permutation interfaces set it up: which rows are
exchanged or flipped, and how (the design layer's view of :mod:`..stats.permutation`)."""

from functools import partial

from ..io.errors import bad_input
from ..io.masked_data import masked_data_shape, read_voxel_chunk
from ..io.tables import read_design
from ..stats import permutation as perm
from ..stats.spatial import TFCE_E, TFCE_H
from .contrasts import cluster_forming_value, parse_contrast
from .pairs import paired_rows


class PermutationTest:
    """One contrast's permutation test, set up from the workflow's files.

    ``inputs`` (the permutation interfaces' inputs) name the design matrix, the masked
    data file, the exchangeability blocks, the model ("paired": sign flips of the
    differences of the contrast's two rows; "one-sample"; "glm": Freedman-Lane), the
    scheme, the number of patterns and the seed. Gives the contrast's label, rows and
    kind (t or F), the permutation model, the data as voxel columns, the scheme and the
    plan of patterns.
    """

    def __init__(self, inputs, spec, scheme=None, n_perm=None):
        design, X = read_design(inputs.design_matrix)
        self.label, self.rows, self.kind = parse_contrast(spec, design.columns)
        self.weights = [{str(c): float(w) for c, w in zip(design.columns, row)}
                        for row in self.rows]
        n_maps, n_voxels = masked_data_shape(inputs.data_file)
        if n_maps != len(design):
            raise bad_input(f"data file {inputs.data_file}",
                            f"{n_maps} rows but the design has {len(design)}")
        blocks = list(inputs.blocks) if inputs.blocks else None
        if blocks is not None and len(blocks) != len(design):
            raise bad_input("blocks", f"{len(blocks)} labels for {len(design)} design rows")
        columns = perm.VoxelColumns(n_maps, n_voxels,
                                    partial(read_voxel_chunk, inputs.data_file), 8 * n_maps)
        if inputs.model == "paired":
            first, second = paired_rows(design, self.rows,
                                        f"design matrix {inputs.design_matrix}")
            columns = columns.differences(first, second)
            blocks = None if blocks is None else [blocks[i] for i in first]
            self.model = perm.one_sample_model(first.size)
        else:
            try:
                self.model = perm.linear_model(X, self.rows)
            except ValueError as err:
                raise bad_input(f"contrast {self.label}", str(err)) from err
        self.columns = columns
        try:
            self.scheme = perm.choose_scheme(self.model, scheme or inputs.scheme, blocks)
        except ValueError as err:
            raise bad_input(f"--perm-scheme {inputs.scheme}", str(err)) from err
        self.plan = perm.plan_permutations(self.model.n_subjects, n_perm or inputs.n_perm,
                                           self.scheme, inputs.seed, blocks, self.model.X)
        self.n_blocks = None if self.plan.blocks is None else max(self.plan.blocks) + 1

    def options(self, inputs):
        """PermutationOptions of the correction, and the cluster-forming (p, value)."""
        tail = "two-sided" if inputs.two_sided and self.kind == "t" else "positive"
        forming = None
        if inputs.correction in ("cluster-size", "cluster-mass"):
            forming = (inputs.cluster_forming_p, cluster_forming_value(
                inputs.cluster_forming_p, self.model.dof, self.model.statistic, tail))
        options = perm.PermutationOptions(
            tail=tail, cluster_threshold=None if forming is None else forming[1],
            tfce=inputs.correction == "tfce", tfce_E=TFCE_E, tfce_H=TFCE_H)
        return options, forming
