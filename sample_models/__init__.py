"""Sample Keras models, data loaders and trained artifacts for dlkit."""
