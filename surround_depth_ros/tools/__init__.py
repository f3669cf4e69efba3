"""Command-line tools: thin layers over the core, one module per subcommand."""
