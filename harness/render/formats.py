"""The text formats a table renders to besides the terminal's (``--format``): one owner for the renderers and the
CLI's choices, light enough for building the parser."""

FILE_FORMATS = ("md", "csv", "json", "latex")
