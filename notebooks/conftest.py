"""pytest hooks for the notebook stage of `make test` (nbval): each notebook's execution time.

The table printed at the end of a run is the one the README quotes; it also projects the whole
stage for the 34 notebooks of the reading list, to keep `make test` inside CI's time.
"""

import collections
import pathlib

READING_LIST = 35  # notebooks 00-34
_seconds = collections.defaultdict(float)
_cells = collections.Counter()


def pytest_runtest_logreport(report):
    notebook = report.nodeid.split("::")[0]
    if notebook.endswith(".ipynb"):
        _seconds[notebook] += report.duration  # setup (kernel start) + call + teardown
        _cells[notebook] += report.when == "call"


def pytest_terminal_summary(terminalreporter, config):
    if not _seconds:
        return
    tr = terminalreporter
    tr.section("notebook execution times (kernel start and every cell)")
    for notebook, seconds in sorted(_seconds.items()):
        tr.write_line(f"{pathlib.Path(notebook).stem:<36} {_cells[notebook]:>4} cells {seconds:>7.1f} s")
    total = sum(_seconds.values())
    mean = total / len(_seconds)
    workers = getattr(config.option, "numprocesses", None) or 1  # pytest-xdist's -n
    tr.write_line(f"{'total':<36} {sum(_cells.values()):>4} cells {total:>7.1f} s, mean {mean:.1f} s")
    tr.write_line(f"{READING_LIST} notebooks at this mean, {workers} at a time: about "
                  f"{READING_LIST * mean / workers / 60:.1f} min for this pass")
