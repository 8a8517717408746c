"""The gallery: persistence, search, erasing removal, encoder checks, crash and reader safety."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from facerep.encoders.base import l2_normalise
from facerep.tasks import index_policy
from facerep.tasks.gallery import Gallery, GalleryError

DIM = 16


class FakeEncoder:
    """An encoder with a name and a size, for galleries fed embeddings directly."""

    input_size = 32
    default_threshold = 0.3

    def __init__(self, name: str = "fake", dim: int = DIM):
        self.name, self.dim = name, dim

    def embed(self, faces: np.ndarray) -> np.ndarray:
        raise AssertionError("these tests add embeddings directly")


def people(n_people: int, per_person: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Unit vectors clustered by person, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_people, DIM))
    vectors = np.repeat(centres, per_person, axis=0) + 0.1 * rng.standard_normal(
        (n_people * per_person, DIM)
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), [f"person{i // per_person}" for i in range(len(vectors))]


def test_round_trip_persists_and_search_finds_the_person(tmp_path: Path) -> None:
    vectors, labels = people(5, 4)
    with Gallery(tmp_path / "g", FakeEncoder()) as gallery:
        ids = gallery.add_embeddings(vectors, labels, sources=[f"p{i}.jpg" for i in range(20)])
        assert ids == list(range(1, 21)) and len(gallery) == 20
    reopened = Gallery(tmp_path / "g", create=False)
    assert len(reopened) == 20 and reopened.labels() == {f"person{i}": 4 for i in range(5)}
    matches = reopened.search_embedding(vectors[6], k=4)
    assert [m.label for m in matches] == ["person1"] * 4
    assert matches[0].id == 7 and matches[0].distance == pytest.approx(0, abs=1e-5)
    assert matches[0].source == "p6.jpg"
    assert [m.distance for m in matches] == sorted(m.distance for m in matches)
    assert reopened.info()["encoder"] == "fake" and reopened.info()["index"] == "exact"


def test_removed_faces_are_never_returned_and_compaction_erases_them(tmp_path: Path) -> None:
    vectors, labels = people(4, 3)
    secret = np.full(DIM, 0.25, np.float32)  # an exactly known unit vector to look for on disk
    path = tmp_path / "g"
    with Gallery(path, FakeEncoder()) as gallery:
        gallery.add_embeddings(vectors, labels)
        [forgotten] = gallery.add_embeddings(secret[None], ["Zelda Forgetme"])
        gallery.save_index()
        assert gallery.search_embedding(secret, 1)[0].id == forgotten
        assert gallery.remove("Zelda Forgetme") == 1
        assert forgotten not in [m.id for m in gallery.search_embedding(secret, 20)]
        assert gallery.remove(2) == 1 and gallery.remove(999) == 0
        assert len(gallery) == 11
        gallery.compact()
        assert forgotten not in [m.id for m in gallery.search_embedding(secret, 20)]
        [new_id] = gallery.add_embeddings(vectors[:1], ["person0"])
        assert new_id > forgotten  # ids are never reused
    on_disk = b"".join(p.read_bytes() for p in path.iterdir() if p.is_file())
    stored = l2_normalise(vectors)  # the bytes the gallery wrote
    assert secret.tobytes() not in on_disk and b"Zelda Forgetme" not in on_disk
    assert stored[1].tobytes() not in on_disk  # the face removed by id (id 2 is row 1)
    assert stored[2].tobytes() in on_disk  # (the check does see vectors that are there)


def test_an_other_encoder_is_refused(tmp_path: Path) -> None:
    Gallery(tmp_path / "g", FakeEncoder()).close()
    with pytest.raises(GalleryError, match=r"holds fake embeddings \(16-D\).*other \(32-D\)"):
        Gallery(tmp_path / "g", FakeEncoder("other", 32))
    with pytest.raises(GalleryError, match="holds fake embeddings"):
        Gallery(tmp_path / "g", FakeEncoder("other", DIM))
    gallery = Gallery(tmp_path / "g")
    with pytest.raises(GalleryError, match="16-D fake embeddings, got shape"):
        gallery.add_embeddings(np.ones((1, 32)), ["x"])
    for label in ("", "   ", "two\nlines", "x" * 201):  # the service's rule, held here
        with pytest.raises(GalleryError, match="must be 1-200 characters on one line"):
            gallery.add_embeddings(np.ones((1, DIM)), [label])
    with pytest.raises(GalleryError, match="NaN"):
        gallery.add_embeddings(np.full((1, DIM), np.nan), ["x"])
    assert len(gallery) == 0


def test_missing_and_damaged_galleries_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="no gallery here"):
        Gallery(tmp_path / "absent", create=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "gallery.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(GalleryError, match="not a readable gallery"):
        Gallery(tmp_path / "bad")


def test_a_damaged_index_file_is_rebuilt_from_the_database(tmp_path: Path) -> None:
    vectors, labels = people(3, 3)
    with Gallery(tmp_path / "g", FakeEncoder()) as gallery:
        gallery.add_embeddings(vectors, labels)
    [index_file] = (tmp_path / "g").glob("index-*.faiss")
    index_file.write_bytes(b"garbage")
    assert Gallery(tmp_path / "g").search_embedding(vectors[4], 1)[0].id == 5


def test_readers_see_other_writers_adds_removals_and_compactions(tmp_path: Path) -> None:
    vectors, labels = people(4, 2)
    writer = Gallery(tmp_path / "g", FakeEncoder())
    writer.add_embeddings(vectors[:4], labels[:4])
    reader = Gallery(tmp_path / "g", create=False)
    assert len(reader.search_embedding(vectors[0], 10)) == 4
    writer.add_embeddings(vectors[4:], labels[4:])
    assert reader.search_embedding(vectors[7], 1)[0].id == 8
    writer.remove("person3")
    assert {m.label for m in reader.search_embedding(vectors[7], 10)} == {
        f"person{i}" for i in range(3)
    }
    writer.compact()
    found = reader.search_embedding(vectors[7], 10)
    assert len(found) == 6 and "person3" not in {m.label for m in found}


def test_auto_index_turns_approximate_when_the_gallery_grows(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(index_policy, "APPROXIMATE_ABOVE", 50)
    monkeypatch.setattr(index_policy, "MIN_TRAINING_FACES", 50)
    vectors, labels = people(20, 5)
    with Gallery(tmp_path / "g", FakeEncoder()) as gallery:
        gallery.add_embeddings(vectors[:40], labels[:40])
        gallery.save_index()
        assert gallery.info()["index"] == "exact"
        gallery.add_embeddings(vectors[40:], labels[40:])
    reopened = Gallery(tmp_path / "g")
    assert reopened.info()["index"] == "ivf"
    assert reopened.search_embedding(vectors[77], 1)[0].id == 78


KILL_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from facerep.tasks.gallery import Gallery
    from tests.tasks.gallery.test_gallery import FakeEncoder, people
    gallery = Gallery(sys.argv[1], FakeEncoder())
    vectors, _ = people(50, 10)
    for batch in range(50):
        gallery.add_embeddings(vectors[batch * 10:(batch + 1) * 10], [f"batch{batch}"] * 10)
        if batch % 7 == 3:
            gallery.save_index()  # also exercise an index file that lags the database
        print(batch, flush=True)
""")


def test_kill_9_during_adds_leaves_a_prefix_of_whole_adds(tmp_path: Path) -> None:
    path = tmp_path / "g"
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    committed = -1
    while committed < 12:
        line = child.stdout.readline()
        assert line, "the child ended before it was killed"
        committed = int(line)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    gallery = Gallery(path)
    counts = gallery.labels()
    batches = sorted(int(label.removeprefix("batch")) for label in counts)
    assert batches == list(range(len(batches))) and len(batches) > committed
    assert set(counts.values()) == {10}
    vectors, _ = people(50, 10)
    for row in range(0, len(gallery), 9):  # every committed vector is searchable, with its label
        match = gallery.search_embedding(vectors[row], 1)[0]
        assert match.id == row + 1 and match.label == f"batch{row // 10}"


def test_threads_search_while_another_adds(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    vectors, labels = people(40, 5)
    gallery = Gallery(tmp_path / "g", FakeEncoder())
    gallery.add_embeddings(vectors[:100], labels[:100])

    def search(row: int) -> str:
        return gallery.search_embedding(vectors[row % 100], 1)[0].label

    def add(batch: int) -> list[int]:
        rows = slice(100 + batch * 10, 110 + batch * 10)
        return gallery.add_embeddings(vectors[rows], labels[rows])

    with ThreadPoolExecutor(8) as pool:
        searches = pool.map(search, range(400))
        adds = list(pool.map(add, range(10)))
        assert list(searches) == [labels[row % 100] for row in range(400)]
    assert sorted(i for ids in adds for i in ids) == list(range(101, 201))
    assert len(gallery) == 200
    for batch, ids in enumerate(adds):  # every added vector is found under the id it was given
        assert gallery.search_embedding(vectors[100 + batch * 10], 1)[0].id == ids[0]


def test_a_refused_open_closes_its_database(tmp_path: Path, monkeypatch) -> None:
    import sqlite3

    opened = []
    connect = sqlite3.connect
    monkeypatch.setattr(
        sqlite3, "connect", lambda *a, **k: opened.append(connect(*a, **k)) or opened[-1]
    )
    Gallery(tmp_path / "g", FakeEncoder()).close()
    with pytest.raises(GalleryError, match="holds fake embeddings"):
        Gallery(tmp_path / "g", FakeEncoder("other", 32))
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[-1].execute("SELECT 1")


def test_enrolled_finds_sources_through_an_index(tmp_path: Path) -> None:
    vectors, labels = people(2, 2)
    gallery = Gallery(tmp_path / "g", FakeEncoder())
    gallery.add_embeddings(vectors, labels, sources=["a.jpg", "b.jpg", "c.jpg", None])
    assert gallery.enrolled(["a.jpg", "c.jpg", "z.jpg"]) == {
        ("a.jpg", "person0"),
        ("c.jpg", "person1"),
    }
    assert gallery.enrolled([]) == set()
    # enrol_folder asks once per batch: a scan of every face each time grows with the gallery.
    plan = gallery._database.db.execute(
        "EXPLAIN QUERY PLAN SELECT source, label FROM faces WHERE source IN (?, ?)", ("a", "b")
    ).fetchall()
    assert "USING INDEX faces_source" in str(plan)


def test_lookups_of_many_ids_or_sources_are_not_bounded_by_sqlite_variables(tmp_path) -> None:
    import sqlite3

    vectors, labels = people(10, 5)
    gallery = Gallery(tmp_path / "g", FakeEncoder())
    gallery.add_embeddings(vectors, labels, sources=[f"{i}.jpg" for i in range(50)])
    # Builds differ (32,766 or 250,000 variables); a batch of queries must not depend on it.
    gallery._database.db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 8)
    found = gallery.search_embeddings(vectors, k=5)
    assert [matches[0].id for matches in found] == list(range(1, 51))
    assert all(len(matches) == 5 for matches in found)
    assert len(gallery.enrolled([f"{i}.jpg" for i in range(100)])) == 50


def test_a_gallery_error_keeps_its_fields_and_one_line_message(tmp_path: Path) -> None:
    # The service answers by `kind` and shows `reason`; the CLI prints the message.
    with pytest.raises(GalleryError) as raised:
        Gallery(tmp_path / "absent", create=False)
    error = raised.value
    assert (error.kind, error.path) == ("not_found", tmp_path / "absent")
    assert error.reason == "no gallery here (no gallery.sqlite)"
    assert str(error) == f"{tmp_path / 'absent'}: no gallery here (no gallery.sqlite)"
    copy = pickle.loads(pickle.dumps(error))  # crosses process boundaries intact
    fields = (str(error), error.kind, error.path, error.reason)
    assert (str(copy), copy.kind, copy.path, copy.reason) == fields


def test_a_gallery_opened_read_only_searches_and_refuses_every_write(tmp_path: Path) -> None:
    vectors, labels = people(4, 3)
    with Gallery(tmp_path / "g", FakeEncoder()) as gallery:
        gallery.add_embeddings(vectors[:6], labels[:6])
    def files() -> dict[str, tuple[int, int]]:
        # SQLite's WAL readers may leave -shm/-wal beside a database in a folder they can write
        kept = [p for p in (tmp_path / "g").iterdir() if not p.name.endswith(("-shm", "-wal"))]
        return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in kept}

    before = files()
    with pytest.raises(GalleryError, match="no gallery here"):
        Gallery(tmp_path / "new", FakeEncoder(), read_only=True)
    with Gallery(tmp_path / "g", read_only=True) as reader:
        assert reader.search_embedding(vectors[0], 1)[0].label == labels[0]
        assert len(reader) == 6 and reader.info()["faces"] == 6
        for write in (lambda: reader.add_embeddings(vectors[6:7], labels[6:7]),
                      lambda: reader.remove(labels[0]), reader.compact, reader.save_index):
            with pytest.raises(GalleryError) as error:
                write()
            assert error.value.kind == "read_only"
    assert files() == before
    assert not (tmp_path / "new").exists()


def test_a_photo_is_enrolled_once_even_when_two_writers_race(tmp_path: Path) -> None:
    # Both writers looked up "already enrolled?" before either committed: the database itself
    # keeps the second copy out, and the second writer's index does not grow a duplicate.
    vectors, labels = people(3, 2)
    sources = [f"photos/{label}/{i}.jpg" for i, label in enumerate(labels)]
    contents = [f"digest{i}" for i in range(len(labels))]
    first, second = Gallery(tmp_path / "g", FakeEncoder()), Gallery(tmp_path / "g")
    assert second.enrolled(sources) == set()
    ids = first.add_embeddings(vectors, labels, sources=sources, contents=contents)
    again = second.add_embeddings(vectors, labels, sources=sources, contents=contents)
    assert None not in ids and again == [None] * len(labels)
    assert len(first) == len(second) == len(labels)
    assert [m.id for m in second.search_embedding(vectors[0], 10)] == sorted(
        ids, key=lambda i: -float(vectors[0] @ vectors[ids.index(i)])
    )
    # Another label, or the same path with other bytes, is another face; no source: no check.
    other = second.add_embeddings(vectors[:1], ["someone else"], sources=sources[:1],
                                  contents=contents[:1])  # fmt: skip
    edited = second.add_embeddings(vectors[:1], labels[:1], sources=sources[:1],
                                   contents=["edited"])  # fmt: skip
    loose = second.add_embeddings(vectors[:2], labels[:1] * 2)
    assert None not in other + edited + loose and len(second) == len(labels) + 4


def test_a_gallery_made_before_the_photo_constraint_takes_it_on(tmp_path: Path) -> None:
    import sqlite3

    vectors, labels = people(2, 2)
    with Gallery(tmp_path / "g", FakeEncoder()) as gallery:
        gallery.add_embeddings(vectors, labels, sources=["a.jpg"] * 4)
    db = sqlite3.connect(tmp_path / "g" / "gallery.sqlite")  # as the old schema had it
    db.execute("DROP INDEX faces_photo")
    db.execute("ALTER TABLE faces DROP COLUMN content")
    db.commit()
    db.close()
    with Gallery(tmp_path / "g") as reopened:
        assert len(reopened) == 4
        twice = [reopened.add_embeddings(vectors[:1], labels[:1], sources=["b.jpg"],
                                         contents=["x"]) for _ in range(2)]  # fmt: skip
        assert twice[1] == [None] and len(reopened) == 5


def test_faces_another_process_commits_while_this_one_waits_to_add_are_searchable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors, labels = people(5, 1)
    ours, theirs = Gallery(tmp_path / "g", FakeEncoder()), Gallery(tmp_path / "g")
    # Their commit lands after our look at the database and before our write lock:
    monkeypatch.setattr(ours._index, "sync", lambda: None)
    theirs.add_embeddings(vectors[:3], labels[:3])
    ours.add_embeddings(vectors[3:], labels[3:])
    ours.save_index()
    monkeypatch.undo()
    ours.close()
    with Gallery(tmp_path / "g") as reopened:
        for vector, label in zip(vectors, labels, strict=True):
            assert reopened.search_embedding(vector, 1)[0].label == label


def test_an_old_gallery_opened_by_several_processes_at_once_migrates_once(
    tmp_path: Path,
) -> None:
    import sqlite3
    import subprocess
    import sys

    vectors, labels = people(2, 2)
    with Gallery(tmp_path / "g", FakeEncoder()) as gallery:
        gallery.add_embeddings(vectors, labels)
    db = sqlite3.connect(tmp_path / "g" / "gallery.sqlite")
    db.execute("DROP INDEX faces_photo")
    db.execute("ALTER TABLE faces DROP COLUMN content")
    db.commit()
    db.close()
    script = (
        "import sys; from facerep.tasks.gallery import Gallery; print(len(Gallery(sys.argv[1])))"
    )
    runs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "g")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(4)]  # fmt: skip
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [out.strip() for out, _ in outputs] == ["4"] * 4, [err for _, err in outputs]


def test_a_reader_without_a_journal_sees_what_the_writer_did_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facerep.tasks.gallery import database

    vectors, labels = people(3, 1)
    with Gallery(tmp_path / "g", FakeEncoder()) as gallery:
        gallery.add_embeddings(vectors, labels)

    def immutable(path: Path) -> tuple:
        # As in a folder this user cannot write, where SQLite can only read it as immutable.
        uri = f"file:{path}?mode=ro&immutable=1"
        return database.sqlite3.connect(uri, uri=True, check_same_thread=False), True

    monkeypatch.setattr(database, "_open_read_only", immutable)
    reader = Gallery(tmp_path / "g", read_only=True)
    assert reader._database.immutable
    assert reader.search_embedding(vectors[0], 1)[0].label == labels[0]
    with Gallery(tmp_path / "g") as writer:
        writer.remove(labels[0])
        writer.compact()
    assert labels[0] not in {m.label for m in reader.search_embedding(vectors[0], 3)}
    assert len(reader) == 2


def test_too_old_an_sqlite_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 26, 0))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.26.0")
    with pytest.raises(GalleryError, match=r"SQLite 3\.26\.0 is too old to write galleries"):
        Gallery(tmp_path / "g", FakeEncoder())


def test_two_creators_of_one_gallery_cannot_mix_encoders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facerep.tasks.gallery.database import GalleryDatabase
    from facerep.tasks.gallery.identity import identity_meta

    real = GalleryDatabase.write_meta

    def first_the_other_one(self, rows):  # the other creator's meta lands first
        real(self, identity_meta(FakeEncoder("other")))
        real(self, rows)

    monkeypatch.setattr(GalleryDatabase, "write_meta", first_the_other_one)
    with pytest.raises(GalleryError, match="holds other embeddings") as error:
        Gallery(tmp_path / "g", FakeEncoder())
    assert error.value.kind == "encoder_mismatch"


def test_a_bad_label_from_python_is_quoted_shortened(tmp_path: Path) -> None:
    vectors, _ = people(1, 1)
    with Gallery(tmp_path / "g", FakeEncoder()) as gallery, pytest.raises(GalleryError) as error:
        gallery.add_embeddings(vectors, ["x" * 100_000])
    assert error.value.kind == "invalid" and "(100,000 characters)" in str(error.value)
    assert len(str(error.value)) < 300
