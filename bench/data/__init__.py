"""Building blocks of `bench.datasets`: finding files, reading formats, splitting, augmenting.

Import the public API from `bench.datasets`.
"""
