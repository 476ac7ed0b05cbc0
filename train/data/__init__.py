"""Training datasets: HQ faces with on-the-fly LQ, real-world pairs, the off-shelf pool, mixes,
and the config's ``[data]`` section -> one of them.

    seeding.py      seeded draws by (seed, epoch, index), set_epoch, argument checks
    files.py        image listing, header check, the pick of readable files
    captions.py     caption files (JSON, CSV) and their lookup
    items.py        the item dict and ``collate``
    faces.py        HQFaceFolder: HQ faces, on-the-fly LQ (Sec. 5.1, Eq. 9)
    paired.py       PairedFolder: real-world HQ/LQ pairs (Sec. 4.2)
    offshelf.py     OffShelfPool: HQ faces with off-shelf LQ variants (Sec. 5.1)
    mixed.py        MixedDataset: concatenation, subsets, per-epoch order
    from_config.py  face_dataset / degradation_dataset from a config's [data] section

Item contract (every dataset here): a ``Sequence`` whose ``__getitem__(index)`` returns
a dict with exactly these keys:

* ``"hq"``: ``uint8 [R, R, 3]`` numpy, RGB, R = the dataset's ``resolution``;
* ``"lq"``: ``uint8 [R, R, 3]``;
* ``"caption"``: ``str``, ``""`` when the image has none;
* ``"face"``: ``bool``, True for face data (id embeddings used), False for non-face pairs;
* ``"source"``: ``str``, the HQ file's path;
* ``"degradation"``: ``dict | None``, the recorded parameters of an on-the-fly LQ
  (:meth:`DegradationParams.to_dict` plus its ``"seed"``), ``{"offshelf": path,
  "variant": k}`` for an off-shelf LQ, ``None`` for a real pair.

Determinism: an item is a pure function of (dataset seed, epoch, index). Call
``set_epoch(epoch)`` on the dataset (a :class:`MixedDataset` forwards it to its parts)
before each epoch and after a restart, and the same items come back. Random
draws use ``numpy.random.SeedSequence([seed, epoch, index, stream])``, so they do
not depend on worker processes or on the order items are read. Datasets hold
file paths only; images are decoded when an item is read.

Files: folders are walked recursively in sorted order, skipping hidden entries;
suffixes are :data:`flipnet_rt.jobs.batchio.IMAGE_SUFFIXES`. Each file's header is
checked with Pillow at construction; an unreadable one is skipped with a logged
warning and listed in ``.skipped``. A file that still fails to decode while
training (changed on disk) is replaced by the next index's file, with a warning,
so an epoch never stops on one bad image.

Torch-free: the training loop converts (``collate`` stacks a batch into arrays).
"""

from .captions import load_captions
from .faces import LFW_CROP_BOX, HQFaceFolder
from .files import header_problem, list_images
from .from_config import degradation_dataset, face_dataset
from .items import collate
from .mixed import MixedDataset
from .offshelf import OffShelfPool
from .paired import PairedFolder, PairFit
from .seeding import item_seed

__all__ = [
    "LFW_CROP_BOX",
    "HQFaceFolder",
    "MixedDataset",
    "OffShelfPool",
    "PairFit",
    "PairedFolder",
    "collate",
    "degradation_dataset",
    "face_dataset",
    "header_problem",
    "item_seed",
    "list_images",
    "load_captions",
]
