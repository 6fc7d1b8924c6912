"""Optional integrations with other learned-optimizer libraries."""
