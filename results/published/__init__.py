"""The papers' numbers as CSV, one row per number: package data jembench.resources.published."""
