"""Prometheus text: well-formed, cumulative buckets, route templates, gallery gauges."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from facerep.service.metrics import BUCKETS, Metrics
from tests.service.conftest import AUTH

SAMPLE = re.compile(r'^([a-z_]+)(\{([a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+]+|\+Inf)$')


def parse(text: str) -> dict[str, float]:
    """Every sample line as `name{labels}` -> value; fails on any malformed line."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("# "):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ .+$", line), line
            continue
        assert SAMPLE.match(line), line
        key, value = line.rsplit(" ", 1)
        samples[key] = float(value)
    return samples


def test_render_counts_buckets_and_escapes_labels() -> None:
    metrics = Metrics()
    for seconds in (0.003, 0.2, 0.25, 0.2, 60.0):  # 0.25: a bucket's bound is inside it
        metrics.observe("POST", "/v1/embed", 200, seconds)
    metrics.observe("GET", "unmatched", 404, 0.001)
    text = metrics.render(3, 7, {'we"ird\\': 2, "team": 5})
    samples = parse(text)
    assert samples['facerep_http_requests_total{method="POST",route="/v1/embed",status="200"}'] == 5
    prefix = 'facerep_http_request_duration_seconds_bucket{method="POST",route="/v1/embed",le='
    counts = [samples[f'{prefix}"{le}"}}'] for le in [*map(str, BUCKETS), "+Inf"]]
    assert counts == sorted(counts) and counts[0] == 1 and counts[-1] == 5
    assert samples[f'{prefix}"0.1"}}'] == 1 and samples[f'{prefix}"0.25"}}'] == 4
    count_key = 'facerep_http_request_duration_seconds_count{method="POST",route="/v1/embed"}'
    assert samples[count_key] == 5
    sum_key = 'facerep_http_request_duration_seconds_sum{method="POST",route="/v1/embed"}'
    assert samples[sum_key] == pytest.approx(60.653)
    assert samples["facerep_embed_batches_total"] == 3 and samples["facerep_embed_crops_total"] == 7
    assert samples['facerep_gallery_faces{gallery="team"}'] == 5
    assert 'facerep_gallery_faces{gallery="we\\"ird\\\\"} 2' in text


def test_metrics_endpoint_after_traffic(client: TestClient, orl) -> None:
    files = {"image": ("a.pgm", orl(1, 1))}
    for label in ("a", "b"):
        answer = client.post(
            "/v1/galleries/metered/faces", files=files, data={"label": label}, headers=AUTH
        )
        assert answer.status_code == 201
    removed = client.delete(f"/v1/galleries/metered/faces/{answer.json()['id']}", headers=AUTH)
    assert removed.status_code == 200
    client.post("/v1/embed", files=files)
    client.post("/v1/galleries/missing/search", files=files)
    client.get("/no/such/path")
    client.request("BREW", "/healthz")
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse(answer.text)
    total = "facerep_http_requests_total"
    assert samples[f'{total}{{method="POST",route="/v1/embed",status="200"}}'] >= 1
    assert (
        samples[f'{total}{{method="POST",route="/v1/galleries/{{name}}/faces",status="201"}}'] >= 1
    )
    assert (
        samples[f'{total}{{method="POST",route="/v1/galleries/{{name}}/search",status="404"}}'] >= 1
    )
    assert samples[f'{total}{{method="GET",route="unmatched",status="404"}}'] >= 1
    assert any('method="other"' in key for key in samples)  # made-up methods mint no labels
    assert samples['facerep_gallery_faces{gallery="metered"}'] == 1  # two added, one removed
    assert samples["facerep_embed_crops_total"] >= samples["facerep_embed_batches_total"] >= 2
