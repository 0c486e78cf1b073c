"""Baseline trainer: one network, one ranking criterion (the Revisiting-DML pipeline)."""
from training.loop import main

if __name__ == '__main__':
    main(lsd_trainer=False)
