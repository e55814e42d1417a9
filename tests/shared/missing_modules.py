"""Runs the cnnlab CLI as if some packages were not installed (tests/shared/test_extras.py):
``python missing_modules.py tensorflow,keras train ...``; with ``--import M1,M2`` instead of
CLI arguments, imports those modules and prints "imported".

The import system's finders are wrapped so that none of them finds a listed top-level module or
its submodules: ``importlib.util.find_spec`` answers None and ``import`` raises the
``ModuleNotFoundError`` it raises for a package that was never installed.
"""

import sys


class Hide:
    def __init__(self, names: set[str], finders: list):
        self.names, self.finders = names, finders

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            return None
        for finder in self.finders:
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                return spec
        return None

    def invalidate_caches(self):
        for finder in self.finders:
            if hasattr(finder, "invalidate_caches"):
                finder.invalidate_caches()


if __name__ == "__main__":
    sys.meta_path[:] = [Hide(set(sys.argv[1].split(",")), list(sys.meta_path))]
    if sys.argv[2] == "--import":
        import importlib

        for module in sys.argv[3].split(","):
            importlib.import_module(module)
        print("imported")
    else:
        from cnnlab.cli import main

        main(sys.argv[2:])
