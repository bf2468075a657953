"""See the package README for this module map."""
