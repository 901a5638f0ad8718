"""Layer 3: workflow builders (``init_*_wf``) with inputnode/outputnode."""

from .group_analysis import (
    init_group_analysis_wf,
    init_group_pipeline_wf,
    init_localizer_variance_wf,
)
from .pipelines import init_demo_wf, init_localizer_wf
from .second_level import init_paired_two_sample_wf

__all__ = [
    "init_demo_wf",
    "init_group_analysis_wf",
    "init_group_pipeline_wf",
    "init_localizer_variance_wf",
    "init_localizer_wf",
    "init_paired_two_sample_wf",
]
