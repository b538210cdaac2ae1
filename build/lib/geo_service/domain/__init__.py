"""Rules over stored data: API keys and roles, edits as checked mutations, layer-file validation."""
