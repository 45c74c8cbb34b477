"""Views: read the tables and render leaderboards, comparisons, fronts, claims, checks."""
