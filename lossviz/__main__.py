"""``python -m lossviz``: the command line (:mod:`lossviz.cli`), as the ``lossviz-train`` script."""

from .cli import main

if __name__ == "__main__":
    main(prog="python -m lossviz")
