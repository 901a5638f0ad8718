#!/bin/bash
/work/wt/slurm/.venv/bin/python /work/wt/slurm/tmp3vld72x8/SLURM/work/demo_wf/batch/pyscript_20261202_043815_demo_wf.group_analysis_wf_design.py