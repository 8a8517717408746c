"""Every endpoint through TestClient (lifespan running, dlib): answers, and every bad input."""

from __future__ import annotations

import io
import re
import sqlite3
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from facerep.service import ServiceSettings
from facerep.tasks.gallery import DB_FILE, Gallery
from tests.service.conftest import AUTH, TOKEN, open_client, png_bytes

# A photo without a face, whatever the detection cascade tries (ORL's s33/4, which HOG misses,
# is found by the cascade's CNN stage).
FACELESS = png_bytes(np.full((120, 100), 200, np.uint8))


def error_of(response) -> str:
    """The error code of a JSON error answer (and a check that it is one)."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert "Traceback" not in body["error"]["message"]
    return body["error"]["code"]


def add(client: TestClient, gallery: str, photo: bytes, label: str, headers=AUTH, name="face.jpg"):
    files = {"image": (name, photo)}
    return client.post(
        f"/v1/galleries/{gallery}/faces", files=files, data={"label": label}, headers=headers
    )


def search(client: TestClient, gallery: str, photo: bytes, k: object = 5):
    files = {"image": ("query.jpg", photo)}
    return client.post(f"/v1/galleries/{gallery}/search", files=files, data={"k": str(k)})


def bomb_png(width: int = 60_000, height: int = 60_000) -> bytes:
    """A valid PNG header claiming `width` x `height` pixels, with a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


# ---- ops -------------------------------------------------------------------------------------


def test_healthz(client: TestClient) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "encoder": "dlib", "dim": 128, "read_only": False}


def test_unknown_paths_and_methods_have_json_errors(client: TestClient) -> None:
    answer = client.get("/v1/nothing-here")
    assert answer.status_code == 404 and error_of(answer) == "not_found"
    assert answer.json()["error"]["message"] == "Not Found"
    answer = client.put("/v1/embed")
    assert answer.status_code == 405 and error_of(answer) == "method_not_allowed"
    assert answer.json()["error"]["message"] == "Method Not Allowed"
    assert answer.headers["allow"] == "POST"


def test_openapi_schema_and_docs_are_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {
        "/v1/embed",
        "/v1/verify",
        "/v1/galleries/{name}/faces",
        "/v1/galleries/{name}/faces/{face_id}",
        "/v1/galleries/{name}/search",
        "/healthz",
        "/metrics",
    } <= set(schema["paths"])
    add_op = schema["paths"]["/v1/galleries/{name}/faces"]["post"]
    assert add_op["security"] == [{"HTTPBearer": []}]
    assert "security" not in schema["paths"]["/v1/embed"]["post"]


def test_docs_load_nothing_from_outside(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert "http" not in page.text  # no CDN, no online validator: every URL is this server's
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) == 3 and all(url.startswith("/docs/assets/") for url in assets)
    for url in assets:  # Swagger UI's script, its style and the icon, from the package
        answer = client.get(url)
        assert answer.status_code == 200 and len(answer.content) > 500, url
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle" in script.text
    assert client.get("/openapi.json").status_code == 200  # what the page loads next
    assert client.get("/redoc").status_code == 404  # FastAPI's other page, from a CDN: gone


# ---- embed and verify --------------------------------------------------------------------------


def test_embed_returns_faces_with_boxes_landmarks_and_unit_embeddings(
    client: TestClient, astronaut_jpeg: bytes
) -> None:
    answer = client.post("/v1/embed", files={"image": ("a.jpg", astronaut_jpeg)})
    assert answer.status_code == 200
    body = answer.json()
    assert body["encoder"] == "dlib" and body["dim"] == 128
    face = body["faces"][0]  # the largest: the astronaut
    box = face["box"]
    assert 0 <= box["left"] < box["right"] <= 512 and 0 <= box["top"] < box["bottom"] <= 512
    assert np.array(face["landmarks"]).shape == (5, 2)
    assert set(face["pose"]) == {"yaw", "pitch", "roll"}
    assert np.linalg.norm(face["embedding"]) == pytest.approx(1.0, abs=1e-4)


def test_embed_matches_the_python_api(client: TestClient, astronaut_jpeg: bytes) -> None:
    from facerep.api import embed

    expected = embed(astronaut_jpeg, "dlib")[0]
    answer = client.post("/v1/embed", files={"image": ("a.jpg", astronaut_jpeg)}).json()
    np.testing.assert_allclose(answer["faces"][0]["embedding"], expected.embedding, atol=1e-5)


def test_verify_same_and_different_people(client: TestClient, orl) -> None:
    def verify(a: bytes, b: bytes, **data: str) -> dict:
        answer = client.post("/v1/verify", files={"a": ("a.pgm", a), "b": ("b.pgm", b)}, data=data)
        assert answer.status_code == 200, answer.text
        return answer.json()

    same = verify(orl(1, 1), orl(1, 2))
    assert same["same"] is True and same["distance"] <= same["threshold"] == pytest.approx(0.08)
    different = verify(orl(1, 1), orl(2, 1))
    assert different["same"] is False and different["distance"] > different["threshold"]
    assert verify(orl(1, 1), orl(2, 1), threshold="1.5")["same"] is True


def test_verify_threshold_null_means_the_encoders_own(client: TestClient, orl) -> None:
    files = {"a": ("a.pgm", orl(1, 1)), "b": ("b.pgm", orl(1, 2))}
    default = client.post("/v1/verify", files=files).json()["threshold"]
    for spelled in ("null", ""):  # the schema's null, as a form can send it
        answer = client.post("/v1/verify", files=files, data={"threshold": spelled})
        assert answer.status_code == 200 and answer.json()["threshold"] == default, answer.text
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    threshold = schema["Body_verify_v1_verify_post"]["properties"]["threshold"]
    assert {"type": "null"} in threshold["anyOf"]
    for wrong in ("nil", "2.5"):
        answer = client.post("/v1/verify", files=files, data={"threshold": wrong})
        assert answer.status_code == 422 and error_of(answer) == "invalid_request"


def test_verify_needs_two_photos_and_a_face_in_each(client: TestClient, orl) -> None:
    answer = client.post("/v1/verify", files={"a": ("a.pgm", orl(1, 1))})
    assert answer.status_code == 422 and error_of(answer) == "invalid_request"
    assert "b" in answer.json()["error"]["message"]
    answer = client.post(
        "/v1/verify", files={"a": ("a.pgm", orl(1, 1)), "b": ("b.png", FACELESS)}
    )
    assert answer.status_code == 422 and error_of(answer) == "no_face"
    assert answer.json()["error"]["message"] == "b (b.png): no face found"


# ---- bad photos ------------------------------------------------------------------------------


def truncated_jpeg(astronaut_jpeg: bytes) -> bytes:
    return astronaut_jpeg[: len(astronaut_jpeg) // 3]


@pytest.mark.parametrize(
    ("make_photo", "code"),
    [
        (lambda jpeg: b"this is a text file, not a photo\n" * 20, "invalid_image"),
        (truncated_jpeg, "invalid_image"),
        (lambda jpeg: b"", "invalid_image"),
        (lambda jpeg: bomb_png(), "image_refused"),
        (lambda jpeg: png_bytes(np.full((120, 100), 200, np.uint8)), "no_face"),
        (lambda jpeg: png_bytes(np.zeros((4, 4), np.uint8)), "no_face"),  # too small for one
    ],
    ids=["text-named-jpg", "truncated-jpeg", "empty", "decompression-bomb", "blank", "tiny"],
)
def test_bad_photos_are_422_with_a_json_reason(
    client: TestClient, astronaut_jpeg: bytes, make_photo, code: str
) -> None:
    photo = make_photo(astronaut_jpeg)
    for answer in (
        client.post("/v1/embed", files={"image": ("photo.jpg", photo, "image/jpeg")}),
        add(client, "badphotos", photo, "someone", name="photo.jpg"),
    ):
        assert answer.status_code == 422, answer.text
        assert error_of(answer) == code
        assert answer.json()["error"]["message"].startswith("image (photo.jpg): ")
    assert client.get("/v1/galleries/badphotos").status_code == 404  # nothing was created


def test_the_type_is_read_from_the_bytes_not_the_name_or_content_type(
    client: TestClient, astronaut_jpeg: bytes
) -> None:
    files = {"image": ("notes.txt", astronaut_jpeg, "text/plain")}
    assert client.post("/v1/embed", files=files).status_code == 200


def test_a_pixel_limit_refuses_large_images_before_decoding(
    service_dir: Path, orl, astronaut_jpeg: bytes
) -> None:
    settings = ServiceSettings(gallery_dir=service_dir / "g2", token=TOKEN, max_pixels=100_000)
    with open_client(settings, service_dir / "home2") as small:
        assert small.post("/v1/embed", files={"image": ("a.pgm", orl(1, 1))}).status_code == 200
        answer = small.post("/v1/embed", files={"image": ("big.jpg", astronaut_jpeg)})
        assert answer.status_code == 422 and error_of(answer) == "image_refused"
        assert "262,144 pixels exceeds the limit of 100,000" in answer.json()["error"]["message"]


def test_bodies_over_the_upload_limit_are_413(client: TestClient) -> None:
    big = bytes(250_000)  # the module's client allows 200,000 bytes
    answer = client.post("/v1/embed", files={"image": ("big.jpg", big)})
    assert answer.status_code == 413 and error_of(answer) == "too_large"
    answer = add(client, "big", big, "x")
    assert answer.status_code == 413 and error_of(answer) == "too_large"


def test_missing_or_malformed_fields_are_422(client: TestClient) -> None:
    answer = client.post("/v1/embed")
    assert answer.status_code == 422 and error_of(answer) == "invalid_request"
    answer = client.post("/v1/embed", data={"image": "not a file"})
    assert answer.status_code == 422 and error_of(answer) == "invalid_request"
    # A multipart body cut off inside a part's headers parses as a form without that part.
    answer = client.post(
        "/v1/embed",
        content=b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a',
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert answer.status_code == 422 and error_of(answer) == "invalid_request"
    assert answer.json()["error"]["message"] == "image: Field required"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"garbage, not multipart", "multipart/form-data; boundary=xyz"),
        (b"--xyz\r\nno header colon\r\n\r\nx\r\n--xyz--\r\n", "multipart/form-data; boundary=xyz"),
        (b"--xyz\r\n", "multipart/form-data"),
    ],
    ids=["garbage", "broken-part-header", "no-boundary"],
)
def test_a_body_that_cannot_be_parsed_is_400(
    client: TestClient, body: bytes, content_type: str
) -> None:
    answer = client.post("/v1/embed", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 400 and error_of(answer) == "bad_request"


# ---- galleries -------------------------------------------------------------------------------


def test_add_search_and_remove(client: TestClient, orl) -> None:
    ids = {}
    for person in (1, 2, 3):
        answer = add(client, "team", orl(person, 1), f"person {person}")
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body["label"] == f"person {person}" and body["gallery"] == "team"
        ids[person] = body["id"]
    assert len(set(ids.values())) == 3
    answer = search(client, "team", orl(2, 5), k=2)
    assert answer.status_code == 200
    matches = answer.json()["matches"]
    assert matches[0]["label"] == "person 2" and len(matches) == 2
    assert matches[0]["id"] == ids[2] and matches[0]["source"] == "face.jpg"
    assert matches[0]["distance"] <= matches[1]["distance"]
    assert client.get("/v1/galleries/team").json() == {
        "name": "team",
        "faces": 3,
        "labels": 3,
        "encoder": "dlib",
    }

    answer = client.delete(f"/v1/galleries/team/faces/{ids[2]}", headers=AUTH)
    assert answer.status_code == 200 and answer.json() == {"id": ids[2], "gallery": "team"}
    labels = [m["label"] for m in search(client, "team", orl(2, 5), k=5).json()["matches"]]
    assert "person 2" not in labels and len(labels) == 2
    again = client.delete(f"/v1/galleries/team/faces/{ids[2]}", headers=AUTH)
    assert again.status_code == 404 and error_of(again) == "face_not_found"


def test_unknown_gallery_is_404(client: TestClient, orl) -> None:
    answer = search(client, "nobody-here", orl(1, 1))
    assert answer.status_code == 404 and error_of(answer) == "gallery_not_found"
    answer = client.delete("/v1/galleries/nobody-here/faces/1", headers=AUTH)
    assert answer.status_code == 404 and error_of(answer) == "gallery_not_found"
    assert client.get("/v1/galleries/nobody-here").status_code == 404


def test_search_needs_a_face_and_k_in_range(client: TestClient, orl) -> None:
    assert add(client, "krange", orl(5, 1), "five").status_code == 201
    for k in (0, 101, -3, "many", "1.5"):
        answer = search(client, "krange", orl(5, 2), k=k)
        assert answer.status_code == 422 and error_of(answer) == "invalid_request", k
        assert answer.json()["error"]["message"].startswith("k: ")
    answer = search(client, "krange", FACELESS)
    assert answer.status_code == 422 and error_of(answer) == "no_face"
    assert len(search(client, "krange", orl(5, 2), k=100).json()["matches"]) == 1


@pytest.mark.parametrize(
    "label", ["", "   ", "two\nlines", "cr\r", "nul\0", "x" * 201, "red\x1b[31m", "tab\there"]
)
def test_labels_must_name_someone(client: TestClient, orl, label: str) -> None:
    answer = add(client, "labels", orl(1, 1), label)
    assert answer.status_code == 422 and error_of(answer) == "invalid_request"
    assert answer.json()["error"]["message"].startswith("label: ")
    assert client.get("/v1/galleries/labels").status_code == 404


def test_a_label_may_be_200_characters(client: TestClient, orl) -> None:
    answer = add(client, "longlabel", orl(1, 1), "x" * 200)
    assert answer.status_code == 201 and answer.json()["label"] == "x" * 200


def test_file_names_are_kept_printable_and_short(client: TestClient, orl) -> None:
    name = "\x1b[31m" + "a" * 300 + ".pgm"
    assert add(client, "filenames", orl(1, 1), "x", name=name).status_code == 201
    [match] = search(client, "filenames", orl(1, 2), k=1).json()["matches"]
    assert match["source"] == "[31m" + "a" * 196
    answer = client.post("/v1/embed", files={"image": (name, b"not a photo")})
    assert answer.json()["error"]["message"].startswith(f"image ([31m{'a' * 196}): ")


def test_add_without_a_label_is_422(client: TestClient, orl) -> None:
    answer = client.post(
        "/v1/galleries/nolabel/faces", files={"image": ("a.pgm", orl(1, 1))}, headers=AUTH
    )
    assert answer.status_code == 422 and "label" in answer.json()["error"]["message"]


def test_delete_with_a_bad_face_id_is_422(client: TestClient) -> None:
    for face_id in ("abc", "0", "-1", str(2**64)):
        answer = client.delete(f"/v1/galleries/team/faces/{face_id}", headers=AUTH)
        assert answer.status_code == 422 and error_of(answer) == "invalid_request", face_id


# ---- galleries the server cannot use ------------------------------------------------------------


def unusable_galleries(root: Path) -> dict[str, tuple[int, str]]:
    """Make, under `root`, a gallery of each kind the server cannot use: name -> (status, code)."""
    Gallery(root / "otherencoder", "pixels").close()
    (root / "damaged").mkdir()
    (root / "damaged" / DB_FILE).write_bytes(b"this is not an SQLite database" * 100)
    Gallery(root / "newformat", "dlib").close()
    with sqlite3.connect(root / "newformat" / DB_FILE) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'format'")
    return {
        "otherencoder": (409, "gallery_conflict"),
        "damaged": (503, "gallery_unavailable"),
        "newformat": (503, "gallery_unavailable"),
    }


def test_a_gallery_the_server_cannot_use_is_409_or_503_without_server_paths(
    client: TestClient, service_dir: Path, orl, caplog: pytest.LogCaptureFixture
) -> None:
    root = service_dir / "galleries"
    for name, (status, code) in unusable_galleries(root).items():
        for answer in (
            search(client, name, orl(1, 1)),
            add(client, name, orl(1, 1), "x"),
            client.get(f"/v1/galleries/{name}"),
            client.delete(f"/v1/galleries/{name}/faces/1", headers=AUTH),
        ):
            assert (answer.status_code, error_of(answer)) == (status, code), (name, answer.text)
            message = answer.json()["error"]["message"]
            assert f"gallery {name!r}" in message and str(service_dir) not in message
        assert f"{root / name}: " in caplog.text  # the operator sees which files and why
    assert "not a readable gallery" in caplog.text and "format 99 is not supported" in caplog.text


def test_a_gallery_path_that_is_a_file(client: TestClient, service_dir: Path, orl) -> None:
    (service_dir / "galleries" / "afile").write_text("not a gallery folder")
    answer = search(client, "afile", orl(1, 1))
    assert answer.status_code == 404 and error_of(answer) == "gallery_not_found"
    answer = add(client, "afile", orl(1, 1), "x")
    assert answer.status_code == 503 and error_of(answer) == "gallery_unavailable"
    assert (service_dir / "galleries" / "afile").read_text() == "not a gallery folder"


# ---- names never become paths ------------------------------------------------------------------


# As sent in the URL path. A literal `..` segment is not here: the client resolves it before
# sending (`/v1/galleries/../search` goes out as `/v1/search`); `%2E%2E` is what reaches us.
BAD_NAMES = ["%2E%2E", ".hidden", "a.b", "a b", "-dash", "x" * 65, "caf%C3%A9", "nl%0A", "nul%00"]
BAD_NAMES += ["..%5C..", "a%5Cb"]  # backslashes
# A slash, even encoded, splits the path: no route matches, so it is answered 404 not_found.
SLASHED_NAMES = ["..%2F..", "..%2F..%2Fescaped", "a%2Fb", "%2Ftmp%2Fx", "a/b"]


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [(name, 422, "invalid_request") for name in BAD_NAMES]
    + [(name, 404, "not_found") for name in SLASHED_NAMES],
)
def test_bad_gallery_names_never_reach_the_filesystem(
    client: TestClient, service_dir: Path, orl, name: str, status: int, code: str
) -> None:
    before = set(service_dir.rglob("*"))
    for answer in (search(client, name, orl(1, 1)), add(client, name, orl(1, 1), "x")):
        assert (answer.status_code, error_of(answer)) == (status, code), name
        if status == 422:
            assert answer.json()["error"]["message"].startswith("path.name: "), answer.text
    created = set(service_dir.rglob("*")) - before
    assert not created and not (service_dir / "escaped").exists()


# ---- tokens and modes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer "},
    ],
    ids=["none", "wrong", "longer", "basic", "no-scheme", "empty"],
)
def test_writes_need_the_token(client: TestClient, orl, headers: dict) -> None:
    answer = add(client, "guarded", orl(1, 1), "x", headers=headers)
    assert answer.status_code == 401 and error_of(answer) == "unauthorized"
    assert answer.headers["www-authenticate"] == "Bearer"
    answer = client.delete("/v1/galleries/team/faces/1", headers=headers)
    assert answer.status_code == 401 and error_of(answer) == "unauthorized"
    assert client.get("/v1/galleries/guarded").status_code == 404


@pytest.mark.parametrize(
    "value",
    [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER   {TOKEN}  "],
    ids=["canonical", "lower-case", "upper-case-and-spaces"],
)
def test_the_token_is_read_from_a_bearer_header(client: TestClient, orl, value: str) -> None:
    answer = add(client, "bearer", orl(1, 1), "x", headers={"Authorization": value})
    assert answer.status_code == 201, answer.text


def test_read_only_refuses_writes_and_needs_no_token(service_dir: Path, orl) -> None:
    folder = service_dir / "ro"
    folder.mkdir()
    settings = ServiceSettings(gallery_dir=folder, read_only=True)
    with open_client(settings, service_dir / "home-ro") as ro:
        assert ro.get("/healthz").json()["read_only"] is True
        answer = add(ro, "team", orl(1, 1), "x")
        assert answer.status_code == 403 and error_of(answer) == "read_only"
        answer = ro.delete("/v1/galleries/team/faces/1", headers=AUTH)
        assert answer.status_code == 403
        assert ro.post("/v1/embed", files={"image": ("a.pgm", orl(1, 1))}).status_code == 200
    assert list(folder.iterdir()) == []


def test_cors_is_off_unless_origins_are_given(client: TestClient, service_dir: Path) -> None:
    origin = {"Origin": "https://example.org"}
    assert "access-control-allow-origin" not in client.get("/healthz", headers=origin).headers
    settings = ServiceSettings(
        gallery_dir=service_dir / "cors", token=TOKEN, cors_origins=("https://example.org",)
    )
    with open_client(settings, service_dir / "home-cors") as cors:
        answer = cors.get("/healthz", headers=origin)
        assert answer.headers["access-control-allow-origin"] == "https://example.org"
        other = cors.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


# ---- bugs stay on the server -------------------------------------------------------------------


def test_a_bug_is_a_generic_500_with_the_traceback_only_in_the_log(
    service_dir: Path, orl, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ServiceSettings(gallery_dir=service_dir / "bug", token=TOKEN)
    with open_client(settings, service_dir / "home-bug") as buggy:

        async def broken(*args: object, **kwargs: object):  # any signature: the bug is ours
            raise RuntimeError("secret detail at /srv/internal/path")

        buggy.app.state.service.embed = broken
        buggy.app.state.service.find_faces = broken
        answer = buggy.post("/v1/embed", files={"image": ("a.pgm", orl(1, 1))})
        assert answer.status_code == 500
        assert answer.json() == {
            "error": {"code": "internal_error", "message": "internal server error"}
        }
        answer = buggy.post("/v1/verify", files={"a": ("a", orl(1, 1)), "b": ("b", orl(1, 2))})
        assert answer.status_code == 500 and "secret" not in answer.text
        metrics = buggy.get("/metrics").text
        assert 'route="/v1/embed",status="500"} 1' in metrics
        assert 'route="/v1/verify",status="500"} 1' in metrics
    # Both requests reached the bug (verify too, whatever arguments it passes).
    assert caplog.text.count("RuntimeError: secret detail at /srv/internal/path") == 2
    assert "Traceback" in caplog.text


def test_an_rgba_png_is_read_like_any_photo(client: TestClient, orl) -> None:
    grey = np.asarray(Image.open(io.BytesIO(orl(1, 1))))
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    answer = client.post("/v1/embed", files={"image": ("a.png", png_bytes(rgba))})
    assert answer.status_code == 200 and len(answer.json()["faces"]) == 1
