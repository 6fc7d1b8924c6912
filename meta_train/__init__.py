"""meta_train: filled by its issue."""
