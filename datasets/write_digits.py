"""Write the embedded digits as a user's own data would look: `python -m datasets.write_digits <dir> [--csv]`.

Without `--csv`: an image folder `<dir>/<digit>/<index>.png` for `--dataset folder --source_path <dir>`.
With `--csv`: the images under `<dir>/images/<digit>/` and `<dir>/digits.csv` in open-metric-learning's
format for `--dataset csv --source_path <dir>/digits.csv`: digits 0-4 are `train` rows, 5-9 `validation`
rows, every validation row both query and gallery (all against all), or with `--query_gallery` the
first half of each digit's images queries and the rest form the gallery. `--box` adds the columns
x_1, y_1, x_2, y_2 with the box (1, 1, 7, 7) on every row. `--per_class N` keeps the first N images of each
digit (tests, quick walkthroughs). The tests and docs/own_data.md use it; it runs anywhere, nothing is
downloaded (scikit-learn ships the images).
"""
import argparse
import csv
import io
import os
import sys

from PIL import Image

from datasets.digits import digit_pixels
from utilities.atomic import atomic_open

TRAIN_DIGITS = range(5)
BOX = (1, 1, 7, 7)


def chosen(per_class):
    """[(sample index, digit, uint8 8×8 image)] in sample order, at most `per_class` per digit (0: all)."""
    pixels, targets = digit_pixels()
    counts, kept = {}, []
    for index, (image, digit) in enumerate(zip(pixels, targets)):
        digit = int(digit)
        if per_class and counts.get(digit, 0) >= per_class:
            continue
        counts[digit] = counts.get(digit, 0) + 1
        kept.append((index, digit, image))
    return kept


def write_images(root, samples):
    """Relative paths `<digit>/<index>.png` under `root`, written."""
    names = []
    for index, digit, image in samples:
        name = '{}/{:04d}.png'.format(digit, index)
        os.makedirs(os.path.join(root, str(digit)), exist_ok=True)
        Image.fromarray(image).save(os.path.join(root, name))
        names.append(name)
    return names


def csv_rows(names, samples, query_gallery=False, box=False):
    """OML rows: label, path, split, is_query, is_gallery [, x_1, y_1, x_2, y_2]."""
    seen, per_digit = {}, {}
    for _, digit, _ in samples:
        per_digit[digit] = per_digit.get(digit, 0) + 1
    rows = []
    for name, (_, digit, _) in zip(names, samples):
        position = seen.get(digit, 0)
        seen[digit] = position + 1
        if digit in TRAIN_DIGITS:
            split, is_query, is_gallery = 'train', '', ''
        elif query_gallery:
            query = position < per_digit[digit] // 2
            split, is_query, is_gallery = 'validation', str(query), str(not query)
        else:
            split, is_query, is_gallery = 'validation', 'True', 'True'
        row = [str(digit), 'images/' + name, split, is_query, is_gallery]
        rows.append(row + [str(v) for v in BOX] if box else row)
    return rows


def write_csv(path, rows, box=False):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['label', 'path', 'split', 'is_query', 'is_gallery'] + (['x_1', 'y_1', 'x_2', 'y_2'] if box else []))
    writer.writerows(rows)
    with atomic_open(path, 'w') as handle:
        handle.write(buffer.getvalue())


def write(root, as_csv=False, per_class=0, query_gallery=False, box=False):
    """The image folder (returns it) or the CSV dataset (returns the CSV's path) under `root`."""
    samples = chosen(per_class)
    if not as_csv:
        write_images(root, samples)
        return root
    names = write_images(os.path.join(root, 'images'), samples)
    path = os.path.join(root, 'digits.csv')
    write_csv(path, csv_rows(names, samples, query_gallery, box), box)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description='Write the embedded digits as an image folder or an OML CSV.')
    parser.add_argument('folder', help='Where to write (created if missing).')
    parser.add_argument('--csv', action='store_true', help='Write images/ and digits.csv (OML format).')
    parser.add_argument('--query_gallery', action='store_true',
                        help='With --csv: validation rows split into disjoint query and gallery sets.')
    parser.add_argument('--box', action='store_true', help='With --csv: a crop box on every row.')
    parser.add_argument('--per_class', type=int, default=0, help='At most this many images per digit (0: all).')
    args = parser.parse_args(argv)
    try:
        os.makedirs(args.folder, exist_ok=True)
        written = write(args.folder, args.csv, args.per_class, args.query_gallery, args.box)
    except OSError as error:
        print('error: {}: {}'.format(args.folder, error.strerror or error), file=sys.stderr)
        sys.exit(2)
    print(written)


if __name__ == '__main__':
    main()
