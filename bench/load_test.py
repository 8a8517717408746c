"""Load test: `facerep serve` on loopback under concurrent embed and search requests.

Each configuration starts a real server (`python -m facerep serve`, uvicorn) on a free loopback
port with a fresh gallery folder, enrols one ORL photo of each of 40 people over HTTP, warms up,
then fires requests from httpx.AsyncClient: half `POST /v1/embed`, half
`POST /v1/galleries/orl/search` (k=5), with ORL photos that were not enrolled, in a fixed order.
A closed loop keeps `concurrency` requests in flight. Any non-2xx answer or transport failure
counts as an error. Meanwhile a probe calls `GET /healthz` every 0.2 s: its latency shows how
long the event loop stalls while the encoder runs (a failed probe is an error too).

Configurations, in the same run and on the same machine, for each encoder:
- `batched`: the default server (ServiceSettings' batch size, faces found in worker processes)
  at `--concurrency`, `--requests` requests;
- `unbatched`: `--batch-size 1` at the same concurrency (`--baseline-requests` requests);
- `threads`: `--detect-threads` (faces found in threads of the server) at the same concurrency
  (`--baseline-requests`);
- `sequential`: the default server at concurrency 1 (`--baseline-requests`): the baseline;
- `slow_clients`: the default server with its header and body timeouts at `--stall-seconds`:
  `--slow-requests` requests at `--concurrency` alone, then the same again while `--stalled`
  half-sent uploads (headers and a first part, then nothing) are held open from another
  loopback address (127.0.0.2); then how long until the server dropped each (408).

    python bench/load_test.py [--requests 2000] [--concurrency 16] [--encoders dlib RUN]
    python bench/load_test.py --configs slow_clients   # just that row, merged into the results

Results: bench/results/load_test.{json,md}; a run of some configurations replaces only their
rows, each then marked with its own date and commit. tests/service/test_server.py runs a small
version.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import asyncio
import contextlib
import json
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from facerep.service.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
TOKEN = "load-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PEOPLE = 40
NO_FACE = (33, 4)  # the one ORL photo dlib finds no face in
GALLERY = "orl"
DEFAULT_BATCH = ServiceSettings.batch_size  # the server's default: what `batched` measures
CONFIGS = ("batched", "unbatched", "threads", "sequential", "slow_clients")
# A multipart upload of 100,000 bytes that stops after its first line.
STALLED_UPLOAD = (
    b"POST /v1/embed HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n"
    b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n--xyz\r\n"
)


def free_port() -> int:
    """A loopback port nothing listens on (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A `facerep serve` subprocess on loopback; its output goes to `log`."""

    def __init__(self, gallery_dir: Path, log: Path, *args: str, encoder: str = "dlib"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [sys.executable, "-m", "facerep", "serve", "--gallery-dir", str(gallery_dir)]
        command += ["--encoder", encoder, "--port", str(self.port), "--log-level", "warning"]
        env = {**os.environ, "FACEREP_TOKEN": TOKEN, "OMP_WAIT_POLICY": "PASSIVE"}
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [*command, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until /healthz answers 200; RuntimeError (with the log) if the server died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}:\n{self.log_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{self.log_text()}")

    def log_text(self) -> str:
        """The server's output so far."""
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """Ctrl-C: uvicorn finishes open requests, then the app closes its galleries."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Server:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Job:
    """One request: an embed or a search with one photo."""

    kind: str
    photo: bytes
    name: str


@dataclass
class Outcome:
    """What one configuration measured."""

    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"embed": [], "search": []})
    errors: Counter = field(default_factory=Counter)
    healthz: list[float] = field(default_factory=list)


def orl_photo(data: Path, person: int, n: int) -> bytes:
    """The bytes of ORL photo s<person>/<n>.pgm."""
    return (data / "orl" / f"s{person}" / f"{n}.pgm").read_bytes()


def make_jobs(data: Path, count: int) -> list[Job]:
    """`count` requests alternating embed and search, over photos 2-10 of the 40 people."""
    jobs = []
    for i in range(count):
        person, n = 1 + i % PEOPLE, 2 + (i // PEOPLE) % 9
        if (person, n) == NO_FACE:
            n += 1
        kind = "embed" if i % 2 == 0 else "search"
        jobs.append(Job(kind, orl_photo(data, person, n), f"s{person}-{n}.pgm"))
    return jobs


async def send(client: httpx.AsyncClient, job: Job) -> httpx.Response:
    """Post one job."""
    files = {"image": (job.name, job.photo)}
    if job.kind == "embed":
        return await client.post("/v1/embed", files=files)
    return await client.post(f"/v1/galleries/{GALLERY}/search", files=files, data={"k": "5"})


async def enrol(url: str, data: Path, people: int = PEOPLE) -> list[int]:
    """Add photo 1 of each person to the gallery (4 at a time); returns the face ids."""
    async with httpx.AsyncClient(base_url=url, timeout=120, headers=AUTH) as client:
        limit = asyncio.Semaphore(4)

        async def add(person: int) -> int:
            async with limit:
                answer = await client.post(
                    f"/v1/galleries/{GALLERY}/faces",
                    files={"image": (f"s{person}-1.pgm", orl_photo(data, person, 1))},
                    data={"label": f"s{person}"},
                )
            answer.raise_for_status()
            return answer.json()["id"]

        return list(await asyncio.gather(*(add(p) for p in range(1, people + 1))))


async def fire(url: str, jobs: list[Job], concurrency: int) -> Outcome:
    """Run the jobs with `concurrency` in flight; probe /healthz meanwhile."""
    outcome = Outcome()
    pending = iter(jobs)  # shared: each worker takes the next job
    limits = httpx.Limits(max_connections=concurrency + 1)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def worker() -> None:
            for job in pending:
                start = time.perf_counter()
                try:
                    answer = await send(client, job)
                    if not answer.is_success:
                        outcome.errors[f"{answer.status_code} {answer.text[:120]}"] += 1
                except httpx.HTTPError as error:
                    outcome.errors[type(error).__name__] += 1
                outcome.latencies[job.kind].append(time.perf_counter() - start)

        async def probe() -> None:
            while True:
                start = time.perf_counter()
                try:
                    answer = await client.get("/healthz")
                    outcome.healthz.append(time.perf_counter() - start)
                    if not answer.is_success:
                        outcome.errors[f"healthz {answer.status_code}"] += 1
                except httpx.HTTPError as error:  # counted, and the probe goes on
                    outcome.errors[f"healthz {type(error).__name__}"] += 1
                await asyncio.sleep(0.2)

        prober = asyncio.create_task(probe())
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        outcome.seconds = time.perf_counter() - start
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prober  # raises what ended the probe early, if anything did
    return outcome


def batch_stats(url: str) -> dict[str, float]:
    """Encoder passes and crops so far, from the server's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    values = {}
    for name in ("facerep_embed_batches_total", "facerep_embed_crops_total"):
        values[name] = float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))
    return values


def open_stalled(port: int, sent: bytes, source: str = "127.0.0.2") -> socket.socket:
    """A connection from `source` (another client address) that sends `sent`, then stalls."""
    address = ("127.0.0.1", port)
    connection = socket.create_connection(address, timeout=30, source_address=(source, 0))
    connection.sendall(sent)
    return connection


def watch_drops(
    connections: list[socket.socket], opened: float, limit_s: float
) -> tuple[list[bytes], list[float]]:
    """Each connection's reply, and the seconds from `opened` to each close by the server."""
    replies = {connection: b"" for connection in connections}
    drop_s = []
    waiting = set(connections)
    while waiting and time.monotonic() - opened < limit_s:
        for connection in select.select(list(waiting), [], [], 0.05)[0]:
            try:
                data = connection.recv(65536)
            except OSError:  # reset: dropped all the same
                data = b""
            replies[connection] += data
            if not data:
                drop_s.append(time.monotonic() - opened)
                waiting.discard(connection)
    for connection in connections:
        connection.close()
    return list(replies.values()), drop_s


def read_to_close(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (which is then closed)."""
    reply = b""
    with connection:
        while data := connection.recv(65536):
            reply += data
    return reply


def percentile_ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else float("nan")


def summarise(outcome: Outcome, concurrency: int, batch_size: int, passes: dict) -> dict:
    """Requests/s, latency percentiles, errors and the server's mean batch size."""
    every = outcome.latencies["embed"] + outcome.latencies["search"]
    crops = passes["facerep_embed_crops_total"]
    return {
        "concurrency": concurrency,
        "batch_size": batch_size,
        "requests": len(every),
        "errors": sum(outcome.errors.values()),
        "error_kinds": dict(outcome.errors),
        "seconds": round(outcome.seconds, 2),
        "requests_per_s": round(len(every) / outcome.seconds, 2),
        "p50_ms": percentile_ms(every, 50),
        "p99_ms": percentile_ms(every, 99),
        "embed_p50_ms": percentile_ms(outcome.latencies["embed"], 50),
        "search_p50_ms": percentile_ms(outcome.latencies["search"], 50),
        "healthz_p50_ms": percentile_ms(outcome.healthz, 50),
        "healthz_p99_ms": percentile_ms(outcome.healthz, 99),
        "mean_batch": round(crops / max(passes["facerep_embed_batches_total"], 1), 2),
    }


def run_config(
    data: Path,
    work: Path,
    jobs: list[Job],
    concurrency: int,
    batch_size: int,
    encoder: str,
    workers: str = "processes",
) -> dict:
    """One fresh server: enrol, warm up, measure; the summary of the measured requests."""
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    with Server(
        folder / "galleries",
        folder / "server.log",
        "--batch-size",
        str(batch_size),
        f"--detect-{workers}",
        encoder=encoder,
    ) as server:
        asyncio.run(enrol(server.url, data))
        asyncio.run(fire(server.url, make_jobs(data, 2 * concurrency), concurrency))  # warm-up
        before = batch_stats(server.url)
        outcome = asyncio.run(fire(server.url, jobs, concurrency))
        after = batch_stats(server.url)
    passes = {key: after[key] - before[key] for key in after}
    return {**summarise(outcome, concurrency, batch_size, passes), "workers": workers}


def run_slow_clients(
    data: Path, work: Path, jobs: list[Job], concurrency: int, stalled: int, stall_s: float
) -> dict:
    """The jobs on one server alone, then with `stalled` half-sent uploads open; their drops."""
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    timeouts = ["--header-timeout", str(stall_s), "--body-timeout", str(stall_s)]
    with Server(folder / "galleries", folder / "server.log", *timeouts) as server:
        asyncio.run(enrol(server.url, data))
        asyncio.run(fire(server.url, make_jobs(data, 2 * concurrency), concurrency))  # warm-up
        alone = asyncio.run(fire(server.url, jobs, concurrency))
        before = batch_stats(server.url)
        opened = time.monotonic()
        connections = [open_stalled(server.port, STALLED_UPLOAD) for _ in range(stalled)]
        with ThreadPoolExecutor(1) as pool:
            drops = pool.submit(watch_drops, connections, opened, 3 * stall_s)
            outcome = asyncio.run(fire(server.url, jobs, concurrency))
            done_s = time.monotonic() - opened
            after = batch_stats(server.url)
            replies, drop_s = drops.result()
    passes = {key: after[key] - before[key] for key in after}
    row = summarise(outcome, concurrency, DEFAULT_BATCH, passes)
    alone_rate = len(jobs) / alone.seconds
    return {
        **row,
        "workers": "processes",
        "stalled": stalled,
        "stall_timeout_s": stall_s,
        # Stalled connections the server had dropped before the measured requests were done
        # (0: every one was open throughout the run).
        "stalled_dropped_during_run": sum(seconds < done_s for seconds in drop_s),
        "stalled_answered_408": sum(reply.startswith(b"HTTP/1.1 408 ") for reply in replies),
        "stalled_dropped": len(drop_s),
        "stalled_dropped_after_s": [
            round(min(drop_s, default=0), 2),
            round(max(drop_s, default=0), 2),
        ],
        "requests_per_s_alone": round(alone_rate, 2),
        "errors_alone": sum(alone.errors.values()),
        "vs_alone": round(row["requests_per_s"] / alone_rate, 2),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding orl/")
    parser.add_argument("--requests", type=int, default=2000, help="requests, batched config")
    parser.add_argument("--baseline-requests", type=int, default=400, help="for the baselines")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--encoders", nargs="+", default=["dlib"], help="names or run folders")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--stalled", type=int, default=64, help="slow_clients: stalled uploads")
    parser.add_argument("--slow-requests", type=int, default=200, help="slow_clients: requests")
    parser.add_argument(
        "--stall-seconds", type=float, default=ServiceSettings.body_timeout, help="its timeouts"
    )
    args = parser.parse_args()
    if not (args.data / "orl" / "s1" / "1.pgm").is_file():
        parser.error(f"{args.data / 'orl'}: ORL faces not found (point --data at shared/data)")
    return args


def measure_encoder(args: argparse.Namespace, encoder: str, work: Path) -> dict[str, dict]:
    """The chosen configurations for one encoder (`slow_clients` for the first encoder only)."""
    configs = {
        "batched": (args.requests, args.concurrency, DEFAULT_BATCH, "processes"),
        "unbatched": (args.baseline_requests, args.concurrency, 1, "processes"),
        "threads": (args.baseline_requests, args.concurrency, DEFAULT_BATCH, "threads"),
        "sequential": (args.baseline_requests, 1, DEFAULT_BATCH, "processes"),
    }
    rows = {}
    for name in args.configs:
        if name == "slow_clients":
            if encoder != args.encoders[0]:
                continue  # stalled uploads never reach the encoder: measured once
            jobs = make_jobs(args.data, args.slow_requests)
            rows[name] = run_slow_clients(
                args.data, work, jobs, args.concurrency, args.stalled, args.stall_seconds
            )
        else:
            count, concurrency, batch_size, workers = configs[name]
            jobs = make_jobs(args.data, count)
            rows[name] = run_config(
                args.data, work, jobs, concurrency, batch_size, encoder, workers
            )
        print(f"  {encoder:<24} {name:<12} {json.dumps(rows[name])}", flush=True)
    return rows


def add_ratios(rows: dict[str, dict]) -> None:
    """Each row's requests/s over the sequential row's, batched's over its baselines'."""
    if "sequential" in rows:
        for row in rows.values():
            row["vs_sequential"] = round(
                row["requests_per_s"] / rows["sequential"]["requests_per_s"], 2
            )
    for baseline in ("unbatched", "threads"):
        if "batched" in rows and baseline in rows:
            rows["batched"][f"vs_{baseline}"] = round(
                rows["batched"]["requests_per_s"] / rows[baseline]["requests_per_s"], 2
            )


def render_markdown(report: dict) -> str:
    from machine import describe_code  # bench/ is on the path when run as a script

    machine = report["machine"]
    lines = [
        "# Load test: facerep serve",
        "",
        f"{report['date']} · {machine['nproc']} cores ({machine['cpu']}) · Python "
        f"{machine['python']}, torch {machine['torch']} · load average at start "
        f"{machine['load_average'][0]:.2f} · {describe_code(report['code'])}",
        "",
        "Written by `python bench/load_test.py`: a real uvicorn server on loopback per row, a "
        f"gallery of {PEOPLE} ORL faces, half embed and half search (k=5) requests with ORL "
        "photos from httpx.AsyncClient in a closed loop. Latency is per request as the client "
        "saw it; healthz is a probe every 0.2 s during the run; mean batch is crops per "
        "encoder pass on the server. vs sequential: requests/s over the concurrency-1 row.",
        "",
        "| encoder | config | workers | concurrency | batch | requests | errors | req/s | "
        "p50 ms | p99 ms | healthz p99 ms | mean batch | vs sequential |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for encoder, rows in report["results"].items():
        for name, r in rows.items():
            lines.append(
                f"| {Path(encoder).name} | {name} | {r['workers']} | "
                f"{r['concurrency']} | {r['batch_size']} | "
                f"{r['requests']} | {r['errors']} | {r['requests_per_s']:.1f} | "
                f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['healthz_p99_ms']:.0f} | "
                f"{r['mean_batch']:.2f} | {ratio(r.get('vs_sequential'))} |"
            )
    lines.append("")
    for encoder, rows in report["results"].items():
        batched = rows.get("batched", {})
        if "vs_unbatched" not in batched:
            continue
        lines.append(
            f"- {Path(encoder).name}: batching on is {batched['vs_unbatched']:.2f}x the "
            f"requests/s of batching off at concurrency {batched['concurrency']} (mean batch "
            f"{batched['mean_batch']:.2f} crops), {batched['vs_sequential']:.2f}x sequential"
            + (
                f"; worker processes are {batched['vs_threads']:.2f}x the requests/s of threads."
                if "vs_threads" in batched
                else "."
            )
        )
    for encoder, rows in report["results"].items():
        if "slow_clients" in rows:
            lines.append(describe_slow_clients(Path(encoder).name, rows["slow_clients"]))
    return "\n".join([*lines, "", f"Note: {report['note']}", ""])


def ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def describe_slow_clients(encoder: str, r: dict) -> str:
    """The slow_clients row in words, with when and where it ran if that was apart."""
    from machine import describe_code

    low, high = r["stalled_dropped_after_s"]
    text = (
        f"- {encoder} slow_clients: with {r['stalled']} half-sent uploads held open from "
        f"another address, {r['requests']} requests at concurrency {r['concurrency']} got "
        f"{r['errors']} errors at {r['requests_per_s']:.1f} requests/s, {r['vs_alone']:.2f}x "
        f"the {r['requests_per_s_alone']:.1f} requests/s of the same requests just before with "
        f"none open ({r['errors_alone']} errors); {r['stalled_dropped_during_run']} stalled "
        f"connections were dropped before the requests were done; {r['stalled_dropped']} of "
        f"{r['stalled']} were dropped, between {low:.1f} and {high:.1f} s after they opened "
        f"(timeouts {r['stall_timeout_s']:g} s), {r['stalled_answered_408']} with a 408."
    )
    if "measured" in r:
        m = r["measured"]
        on = m["machine"]
        text += (
            f" Measured on its own: {m['date']}, {on['nproc']} cores ({on['cpu']}), Python "
            f"{on['python']}, load average {on['load_average'][0]:.2f} at the start, "
            f"{describe_code(m['code'])}."
        )
    return text


def main() -> None:
    # bench/ is the script's folder; tests import this file
    from machine import code_version, describe_machine, write_results

    args = parse_args()
    machine = describe_machine()
    code = code_version()  # before measuring: the facerep that was started is what ran
    results = {}
    with tempfile.TemporaryDirectory(prefix="facerep-load-") as work:
        for encoder in args.encoders:
            results[encoder] = measure_encoder(args, encoder, Path(work))
            add_ratios(results[encoder])
    load_average_end = os.getloadavg()
    if set(args.configs) != set(CONFIGS) and (args.out / "load_test.json").is_file():
        report = merge_rows(args.out / "load_test.json", results, machine, code)
        write_results(args.out, "load_test", report, render_markdown(report))
        print(f"merged {', '.join(args.configs)} into {args.out / 'load_test.json'} and .md")
        return
    report = {
        "benchmark": "load_test",
        "date": machine["date"],
        "machine": machine,
        "code": code,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "load_average_end": load_average_end,
        "note": note(machine, load_average_end),
        "results": results,
    }
    write_results(args.out, "load_test", report, render_markdown(report))
    print(f"wrote {args.out / 'load_test.json'} and .md")


def merge_rows(path: Path, results: dict, machine: dict, code: dict) -> dict:
    """The report at `path` with `results`' rows replacing its own, each marked with its run."""
    report = json.loads(path.read_text(encoding="utf-8"))
    measured = {"date": machine["date"], "machine": machine, "code": code}
    for encoder, rows in results.items():
        for name, row in rows.items():
            report["results"].setdefault(encoder, {})[name] = {**row, "measured": measured}
    return report


def note(machine: dict, load_average_end: tuple[float, ...]) -> str:
    """How to read the report, from the machine it ran on: facts only, no conclusions."""
    return (
        f"{machine['nproc']} CPU cores, load average {machine['load_average'][0]:.2f} at the "
        f"start and {load_average_end[0]:.2f} at the end: other work on the machine makes "
        "absolute rates noisy; read the ratios within the run. An encoder given as a folder "
        "is a local `facerep pretrain` run (not in git)."
    )


if __name__ == "__main__":
    main()
