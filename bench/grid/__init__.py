"""The grid: a leaderboard's grid.yaml validated, expanded into keyed cells, and estimated."""
