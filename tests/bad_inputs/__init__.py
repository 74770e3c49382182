"""Generated bad-input corpus for tests/test_bad_inputs.py (see corpus.py)."""
