"""Start-up check of a user's image collection: every image exists and its header can be read.

Reading only the header (PIL opens lazily) costs a file open per image, so a missing, empty or
non-image file is reported with its path before any run folder exists, instead of in a DataLoader
worker hours later. A file whose header is fine but whose pixel data is truncated is still found when
it is decoded (datasets.decoding names it then).
"""
import os

from PIL import Image

IMAGE_EXTENSIONS = frozenset(extension for extension, _ in Image.registered_extensions().items())


def is_image_name(name):
    """A visible file whose extension PIL can decode (README.txt, .DS_Store, ._* resource forks are not)."""
    return not name.startswith('.') and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def image_problem(path):
    """None for a readable image, else why not (one short phrase); `image_size` gives the size."""
    return image_size(path)[1]


def image_size(path):
    """((width, height), None) of a readable image, or (None, why not)."""
    if not os.path.exists(path):
        return None, 'not found'
    try:
        with Image.open(path) as image:
            return image.size, None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return None, 'cannot be read as an image ({})'.format(str(error).splitlines()[0] if str(error) else
                                                              type(error).__name__)
