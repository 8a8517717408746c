"""A persistent face gallery: SQLite the source of truth, FAISS the derived index.

    database.py   the schema, the connection's settings and every query
    index_sync.py the derived index, kept in step with the database (and compaction)
    identity.py   which encoder made the vectors; any other is refused
    labels.py     the rule for a person's label
    locks.py      many searches at once, one write at a time
    gallery.py    `Gallery`, which puts them together
"""

from facerep.tasks.gallery.database import DB_FILE, GalleryFace
from facerep.tasks.gallery.errors import GalleryError, GalleryErrorKind
from facerep.tasks.gallery.gallery import Gallery, photo_digest
from facerep.tasks.gallery.labels import LABEL_RULE, MAX_LABEL, check_label, is_valid_label

__all__ = [
    "DB_FILE",
    "LABEL_RULE",
    "MAX_LABEL",
    "Gallery",
    "GalleryError",
    "GalleryErrorKind",
    "GalleryFace",
    "check_label",
    "is_valid_label",
    "photo_digest",
]
