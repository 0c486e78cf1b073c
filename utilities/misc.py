"""Small helpers shared by the trainers: the namespace as saved to disk, its text dump."""
import argparse
import copy

WANDB_KEY_PLACEHOLDERS = ('Your_Key', '<your_api_key_here>')
REDACTED = '<redacted>'


def redacted_namespace(opt):
    """A copy of `opt` safe to write anywhere: no `experiment` attribute, a real W&B key replaced."""
    safe = argparse.Namespace(**{k: v for k, v in vars(opt).items() if k != 'experiment'})
    safe = copy.copy(safe)
    if getattr(safe, 'wandb_key', None) not in WANDB_KEY_PLACEHOLDERS and hasattr(safe, 'wandb_key'):
        safe.wandb_key = REDACTED
    return safe


def gimme_save_string(opt):
    """Parameter_Info.txt text: attribute name, then a tab-indented str(value), then a blank line."""
    text = ''
    for key, value in vars(opt).items():
        if isinstance(value, dict):
            text += key + '\n' + ''.join('\t{}: {}\n'.format(k, v) for k, v in value.items()) + '\n'
        else:
            text += key + '\n\t' + str(value) + '\n\n'
    return text
