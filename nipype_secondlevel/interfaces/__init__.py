"""Layer 2: thin Nipype interfaces, files in and files out."""

from .anatomy import AnatomicalLabels
from .contrasts import Contrast
from .data import MaskedData, MaskedDataFromRows, StackMaskedData
from .derivatives import DatasetDescription, PipelineGraph, WritePlan
from .estimation import EstimateOLS
from .fetching import FetchLocalizer
from .group_design import DesignMatrix, SelectMaps
from .masking import GroupMask, SummarizeMaps
from .mixed_effects import EstimateMixedEffects
from .plotting import GlassBrain
from .report import ContrastSlices, ContrastViewer, HTMLReport
from .resampling import ResampleMaps
from .simulation import SimulatePaired
from .sink import DerivativesSink
from .smoothing import Smooth
from .thresholding import Threshold

__all__ = [
    "AnatomicalLabels",
    "Contrast",
    "ContrastSlices",
    "ContrastViewer",
    "DatasetDescription",
    "DerivativesSink",
    "DesignMatrix",
    "EstimateMixedEffects",
    "EstimateOLS",
    "FetchLocalizer",
    "GlassBrain",
    "GroupMask",
    "HTMLReport",
    "MaskedData",
    "MaskedDataFromRows",
    "PipelineGraph",
    "ResampleMaps",
    "SelectMaps",
    "SimulatePaired",
    "Smooth",
    "StackMaskedData",
    "SummarizeMaps",
    "Threshold",
    "WritePlan",
]
