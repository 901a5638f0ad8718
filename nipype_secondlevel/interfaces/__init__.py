"""Layer 2: thin Nipype interfaces, files in and files out."""

from .contrasts import Contrast
from .design import PairedDesign
from .estimation import EstimateOLS
from .fetching import FetchLocalizer
from .masking import GroupMask
from .plotting import GlassBrain
from .simulation import SimulatePaired
from .sink import DerivativesSink
from .thresholding import Threshold

__all__ = [
    "Contrast",
    "DerivativesSink",
    "EstimateOLS",
    "FetchLocalizer",
    "GlassBrain",
    "GroupMask",
    "PairedDesign",
    "SimulatePaired",
    "Threshold",
]
