"""Layer 3: workflow builders (``init_*_wf``) with inputnode/outputnode."""

from .group_analysis import init_group_analysis_wf
from .pipelines import init_demo_wf, init_group_pipeline_wf, init_localizer_wf

__all__ = [
    "init_demo_wf",
    "init_group_analysis_wf",
    "init_group_pipeline_wf",
    "init_localizer_wf",
]
