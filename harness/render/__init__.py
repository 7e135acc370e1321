"""Turning computed reports into tables, figures, the HTML viewer and progress output (no torch)."""
