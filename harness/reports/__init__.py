"""Computing from records, never importing torch: statistics, leaderboards, comparisons, findings, analyses, plans,
the depth summary and the accuracy and validation reports."""
