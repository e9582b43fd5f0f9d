"""Training, evaluation and prediction for the tasks kgmm learns."""
