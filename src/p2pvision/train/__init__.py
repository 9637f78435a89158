"""Training: experiment configs, data module with cached regions, Lightning modules, the run loop."""
