"""Runs the cnnlab CLI as if some packages were not installed (for tests/*/test_extras-like
checks): ``python missing_modules.py tensorflow,keras train ...``.

A finder first on ``sys.meta_path`` answers every import of a listed top-level module, and of
its submodules, with the ``ModuleNotFoundError`` Python raises for an absent package.
"""

import sys


class Missing:
    def __init__(self, names: set[str]):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None  # not ours: the next finder looks


if __name__ == "__main__":
    sys.meta_path.insert(0, Missing(set(sys.argv[1].split(","))))
    from cnnlab.cli import main

    main(sys.argv[2:])
