"""LSD trainer: the student learns a ranking loss plus listwise self-distillation from its own
previous-epoch snapshot (arXiv 2206.08880). With a plain --loss it trains exactly like main_original.py."""
from training.loop import main

if __name__ == '__main__':
    main(lsd_trainer=True)
