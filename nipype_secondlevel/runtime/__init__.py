"""Running workflows: plugins and progress, the work-folder lock, SLURM."""
