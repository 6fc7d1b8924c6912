"""resel: filled by its issue."""
