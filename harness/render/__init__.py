"""Turning computed reports into tables, figures, the HTML viewer and progress bars; the output formats. No torch:
what needs the losses' directions is handed in (``viewer.LossDirections``)."""
