"""The spatial core: coordinates, the layer schema, reading and checking layers, indexes and the immutable snapshot. Imports nothing above it."""
