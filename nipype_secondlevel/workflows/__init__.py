"""Layer 3: workflow builders (``init_*_wf``) with inputnode/outputnode, and the plans
they are built from."""

from ..design.plan import Plan, plan_analysis
from .group_analysis import init_group_analysis_wf
from .pipelines import (
    init_demo_wf,
    init_group_pipeline_wf,
    init_localizer_wf,
    init_model_pipeline_wf,
    plan_demo,
    plan_localizer,
)

__all__ = [
    "Plan",
    "init_demo_wf",
    "init_group_analysis_wf",
    "init_group_pipeline_wf",
    "init_localizer_wf",
    "init_model_pipeline_wf",
    "plan_analysis",
    "plan_demo",
    "plan_localizer",
]
