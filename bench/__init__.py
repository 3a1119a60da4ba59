"""Benchmarks of lossviz (``make bench``): never run as timed tests.

``bench/losses.py`` times the pair losses against pytorch-metric-learning; ``bench/memory.py``
measures peak tensor memory and aten op counts with the PyTorch profiler (also used by
``tests/test_memory.py``)."""
