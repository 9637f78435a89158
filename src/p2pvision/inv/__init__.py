"""INV (Interpretable Network Visualizations): layer-wise cluster maps of a CNN, partial-reveal images for
people to label, Sentence-BERT label processing and global explanations per class across layers."""
