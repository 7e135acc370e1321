"""The ``opd`` command line, the top of the house: ``main`` (the parser and the error paragraphs), ``options``
(the flags commands share, defined once) and ``commands`` (one module per subcommand)."""
