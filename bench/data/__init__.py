"""Building blocks of `bench.data.datasets`: finding files, reading formats, splitting, augmenting.

Import the public API from `bench.data.datasets`.
"""
