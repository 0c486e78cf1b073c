"""A stand-in trainer for the tuner's tests: it takes every trainer flag, 'trains' --n_epochs epochs of
FAKE_EPOCH_SECONDS each, and logs a Val mAP@R that is a known function of --lr, --kd_alpha, the fold and
the epoch, so that a study's values can be checked by hand. It resumes from its last epoch (--resume
<folder>), records every start and resume in attempts.txt, and stops with exit 3 (the trainers' code for
a diverged run) when --lr exceeds FAKE_DIVERGE_ABOVE."""
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import parameters  # noqa: E402


def val_value(opt, epoch):
    """Rises over the epochs to a peak at epoch 1, highest near lr 1e-3; the folds differ by 0.1."""
    import math
    peak = 1.0 - abs(math.log10(opt.lr) + 3) / 10 + 0.001 * min(opt.kd_alpha, 100) / 100
    return round(peak - 0.1 * opt.cv_fold - 0.05 * abs(epoch - 1), 6)


def fake_value(lr, kd_alpha, fold, epoch):
    opt = parameters.read_arguments(['--lr', repr(lr), '--kd_alpha', repr(kd_alpha)])
    opt.cv_fold = fold
    return val_value(opt, epoch)


def main(argv):
    opt = parameters.read_arguments(argv)
    if opt.resume:
        folder = opt.resume
        with open(os.path.join(folder, 'args.json')) as handle:
            opt = parameters.read_arguments(json.load(handle))
        with open(os.path.join(folder, 'resume_state.pth.tar')) as handle:
            first = int(handle.read()) + 1
        note = 'resume {}'.format(first)
    else:
        folder = os.path.join(opt.save_path, opt.dataset, opt.savename)
        os.makedirs(os.path.join(folder, 'CSV_Logs'))
        with open(os.path.join(folder, 'args.json'), 'w') as handle:
            json.dump(argv, handle)
        first, note = 0, 'start'
    with open(os.path.join(folder, 'attempts.txt'), 'a') as handle:
        handle.write(note + '\n')
    if opt.lr > float(os.environ.get('FAKE_DIVERGE_ABOVE', 'inf')):
        print('Training diverged: the loss is nan at epoch 0.', file=sys.stderr)
        return 3
    log = os.path.join(folder, 'CSV_Logs', 'Data_Val_discriminative_mAP_c.csv')
    for epoch in range(first, opt.n_epochs):
        time.sleep(float(os.environ.get('FAKE_EPOCH_SECONDS', '0')))
        with open(log, 'a') as handle:
            handle.write(('mAP_c\n' if epoch == 0 else '') + '{}\n'.format(val_value(opt, epoch)))
        with open(os.path.join(folder, 'resume_state.pth.tar'), 'w') as handle:
            handle.write(str(epoch))
    with open(os.path.join(folder, 'training_summary.txt'), 'w') as handle:
        handle.write('done\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
