"""The lowest layer: files, YAML, threads, the configuration schema, image codecs, geometry, teacher outputs."""
