"""Metrics that compare explanations and interpretable models; each states whether higher or lower is better."""
