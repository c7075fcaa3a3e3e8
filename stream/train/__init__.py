"""Training: read historical data, fit and evaluate a distributed KNN, publish the model."""
