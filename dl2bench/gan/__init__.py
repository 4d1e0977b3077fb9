"""GANs (the course's final project): the two-network update (step.py), latent sampling with
truncation (latent.py) and the sample-quality measures (metrics.py: improved precision and recall,
FID) in the feature space of a classifier dl2bench trained."""
