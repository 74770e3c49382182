"""Prefect flows over the cosmos_synth stages, and flows/local_stack.py: a local server + worker for the demo."""
