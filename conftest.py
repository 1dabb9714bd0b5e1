# makes the top-level scripts importable from tests/ (they are flat files, not a package)
