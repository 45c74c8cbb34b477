"""The work of each cell: the training loop, training a run, evaluating and checking a model."""
