"""The shared training pipeline of main.py and main_original.py."""
