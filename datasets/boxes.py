"""Crop boxes of open-metric-learning's CSV format (`x_1, y_1, x_2, y_2`: pixel corners, the first inclusive,
the second exclusive, as `image[y_1:y_2, x_1:x_2]`).

An image with a box is referred to by a `BoxedPath`: the path string itself (so every tool that opens
`image_paths` with PIL, compares or exports them keeps working) carrying the box, which both decoders
apply right after reading the file. Several rows of a CSV may name one file with different boxes.
"""


class BoxedPath(str):
    """An image path with its crop box (x_1, y_1, x_2, y_2)."""

    def __new__(cls, path, box):
        boxed = super().__new__(cls, path)
        boxed.box = tuple(int(v) for v in box)
        return boxed

    def __reduce__(self):  # DataLoader workers receive the box too
        return BoxedPath, (str(self), self.box)


def box_of(path):
    return getattr(path, 'box', None)


def crop_pil(image, path):
    box = box_of(path)
    return image if box is None else image.crop(box)


def crop_tensor(image, path):
    """A C×H×W tensor cut to the path's box."""
    box = box_of(path)
    if box is None:
        return image
    x_1, y_1, x_2, y_2 = box
    return image[:, y_1:y_2, x_1:x_2].contiguous()
