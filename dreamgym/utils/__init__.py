"""Small helpers every stage shares, each with one home: files (hashing, atomic writes),
locks, versioned JSON and thread settings. Nothing here imports torch at module level."""
