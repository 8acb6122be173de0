"""Helpers every other room may use and that use nothing of the package: atomic file writes, video/image files,
quieting third-party notices, keeping credentials off the disk, and the aliases of old import paths."""
