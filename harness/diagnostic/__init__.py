"""The method's math: node selection, the distillation losses, alignment with the ideal gradient, and the
per-question diagnostic that ties them to sampled rollouts."""
