"""``tweetheads serve`` as a real process: started on a free port of 127.0.0.1 (``--port 0``, the URL read
from what it prints), driven over real HTTP (httpx, and raw sockets for clients that leave), ended by its pid.

One module-scoped cache holds the sample tweets' vectors (and MiniLM's OpenVINO export) and a
logistic head trained on them, as in tests/test_score.py. One server with small limits answers
most tests; SIGTERM and the refusals at start-up get processes of their own.
"""
from __future__ import annotations

import asyncio
import csv
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli

from .conftest import REPO, sample_heads

LIMITS = {"max_texts": 64, "max_text_chars": 2000, "max_body_bytes": 65536, "max_batch_texts": 32}
SERVER_ARGS = ("--max-texts", "64", "--max-text-chars", "2000", "--max-body-bytes", "65536",
               "--max-batch-texts", "32", "--max-wait-ms", "20", "--max-queued-texts", "3000")


@pytest.fixture(scope="module")
def shared(tmp_path_factory, minilm_path):
    from embed.errors import DataError  # noqa: F401  (the module imports the library as score's tests do)

    found = sample_heads(tmp_path_factory.mktemp("serve"), other=True)
    return found | {"texts": list(dict.fromkeys(row["text"] for row in found["rows"]))}


class Server:
    """``cli.py serve`` in a subprocess; ``url`` once it printed its address and /health answers."""

    def __init__(self, tmp: Path, *args: str, name: str = "server"):
        self.out, self.err = tmp / f"{name}.out", tmp / f"{name}.err"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen([sys.executable, "cli.py", "serve", "--port", "0", *args], cwd=REPO,
                                            stdout=out, stderr=err, env=env)
        self.url = None

    def wait_ready(self, timeout: float = 120) -> Server:
        deadline = time.monotonic() + timeout
        while self.url is None:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited {self.process.returncode} before it was ready:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"serve printed no URL in {timeout} s:\n{self.logs()}")
            for line in self.out.read_text().splitlines():
                if line.startswith("serving http://"):
                    self.url = line.split()[1]
            time.sleep(0.05)
        assert self.url.startswith("http://127.0.0.1:"), self.url  # loopback by default
        while httpx.get(f"{self.url}/health", timeout=10).status_code != 200:
            time.sleep(0.05)
        return self

    def logs(self) -> str:
        return f"stdout:\n{self.out.read_text()[-3000:]}\nstderr:\n{self.err.read_text()[-6000:]}"

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"serve did not stop {timeout} s after SIGTERM:\n{self.logs()}") from None
        return self.process.returncode

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=30).json()

    def predict(self, texts, **kwargs) -> httpx.Response:
        return httpx.post(f"{self.url}/predict", json={"texts": texts}, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def server(shared):
    running = Server(shared["tmp"], "--model", "minilm", "--head", str(shared["head"]), "--cache-dir",
                     str(shared["cache"]), *SERVER_ARGS)
    try:
        yield running.wait_ready()
    finally:
        rc = running.stop()
    assert rc == 0, running.logs()


def _answers(response: httpx.Response) -> list[tuple[str, list[float], bool]]:
    assert response.status_code == 200, response.text
    body = response.json()
    return [(p["label"], [p["proba"][c] for c in ("Negative", "Neutral", "Positive")], p["truncated"])
            for p in body["predictions"]]


def _new_texts(shared, n: int, tag: str) -> list[str]:
    """``n`` texts no cache has seen: sample tweets with a tag and a number."""
    texts = shared["texts"]
    return [f"{texts[i % len(texts)]} #{tag}{i}" for i in range(n)]


def _still_serving(server) -> None:
    response = server.predict(["Still here after that?"])
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1, response.text


# -- answers ----------------------------------------------------------------------------------------
def test_predictions_equal_scores_for_the_same_texts(shared, server, tmp_path):
    texts = _new_texts(shared, 24, "score") + ["word " * 400]  # the last one is past MiniLM's 256 tokens
    source = tmp_path / "in.csv"
    with open(source, "w", newline="") as handle:
        csv.writer(handle).writerows([["text"], *[[t] for t in texts]])
    cache = tmp_path / "score-cache"  # a cache of its own: score encodes these texts itself, as the server does
    shutil.copytree(shared["cache"] / "exports", cache / "exports")
    result = CliRunner().invoke(cli, ["score", str(source), "--model", "minilm", "--head", str(shared["head"]),
                                      "--cache-dir", str(cache), "--output", str(tmp_path / "out.csv")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "out.csv", newline="") as handle:
        scored = list(csv.DictReader(handle))
    before = server.health()["served"]
    response = server.predict(texts)
    body = response.json()
    assert body["model"] == scored[0]["pred_model"] and body["head"] == scored[0]["pred_head"]
    answers = _answers(response)
    assert [a[0] for a in answers] == [row["pred_label"] for row in scored]
    expected = np.array([[float(row[f"pred_proba_{c}"]) for c in ("Negative", "Neutral", "Positive")]
                         for row in scored])
    np.testing.assert_allclose([a[1] for a in answers], expected, rtol=0, atol=1e-6)  # other batches, same vectors
    assert [a[2] for a in answers] == [False] * 24 + [True]
    assert server.health()["served"]["encoded"] - before["encoded"] == len(texts)
    assert _answers(server.predict(texts)) == answers  # again: all from the cache, nothing encoded
    assert server.health()["served"]["encoded"] - before["encoded"] == len(texts)


def test_info_names_the_model_head_classes_and_limits(shared, server):
    info = httpx.get(f"{server.url}/info", timeout=30).json()
    assert info["classes"] == ["Negative", "Neutral", "Positive"]
    assert info["fingerprint"] == shared["fingerprint"] and info["model"] == "minilm"
    assert info["head"] == f"logistic@{shared['head']}" and info["head_kind"] == "head"
    assert info["backend"] in ("openvino", "torch") and info["precision"] in ("fp32", "bf16", "fp16")
    assert {k: info["limits"][k] for k in LIMITS} == LIMITS
    health = server.health()
    assert health["status"] == "ok" and set(health["served"]) >= {"requests", "encoder_calls", "encoded"}


def test_a_request_larger_than_the_batch_is_served_whole(shared, server):
    texts = _new_texts(shared, 50, "whole")  # over --max-batch-texts 32, within --max-texts 64
    answers = _answers(server.predict(texts))
    assert len(answers) == 50
    assert server.health()["served"]["largest_batch"] >= 50


def test_an_empty_list_gets_no_predictions(server):
    assert server.predict([]).json()["predictions"] == []


# -- bad input: status, message, and the server goes on ---------------------------------------------
def _chunks(data: bytes):
    for start in range(0, len(data), 4096):
        yield data[start:start + 4096]


_BIG = b'{"texts": ["' + b"a" * 70_000 + b'"]}'
BAD = [  # (name, body bytes or a JSON value, status, code, words the message must have, index)
    ("body over the limit", _BIG, 413, "body_too_large", [f"{len(_BIG):,} bytes", "65,536", "--max-body-bytes"], None),
    ("chunked body over the limit", "chunked", 413, "body_too_large", ["65,536", "--max-body-bytes"], None),
    ("too many texts", {"texts": ["hi"] * 65}, 422, "too_many_texts", ["65 texts", "64", "--max-texts", "text 64"], 64),
    ("text too long", {"texts": ["ok", "fine", "x" * 2001]}, 422, "text_too_long",
     ["text 2", "2,001 characters", "2,000", "--max-text-chars"], 2),
    ("a number", {"texts": ["ok", 5]}, 422, "not_a_string", ["text 1 is a number"], 1),
    ("null", {"texts": [None]}, 422, "not_a_string", ["text 0 is null"], 0),
    ("an object", {"texts": ["a", "b", {"t": 1}]}, 422, "not_a_string", ["text 2 is an object"], 2),
    ("empty text", {"texts": ["ok", "fine", ""]}, 422, "empty_text", ["text 2 is empty"], 2),
    ("whitespace", {"texts": ["  \n "]}, 422, "empty_text", ["text 0 is empty (only whitespace)"], 0),
    ("unpaired surrogate", b'{"texts": ["ok", "bad \\ud800 here"]}', 422, "invalid_text",
     ["text 1", "unpaired surrogate"], 1),
    ("malformed JSON", b'{"texts": ["a",', 400, "invalid_json", ["not valid JSON", "line 1"], None),
    ("invalid UTF-8", b'{"texts": ["caf\xe9"]}', 400, "invalid_utf8", ["not valid UTF-8", "byte 15", "0xe9"], None),
    ("empty body", b"", 400, "empty_body", ["empty"], None),
    ("deep nesting", b"[" * 50_000, 400, "invalid_json", ["too deeply"], None),
    ("a bare list", ["a", "b"], 422, "wrong_shape", ["got an array", '{"texts": [...]}'], None),
    ("text, not texts", {"text": "a"}, 422, "wrong_shape", ['no "texts" key', '"texts": ["..."]'], None),
    ("texts a string", {"texts": "a"}, 422, "wrong_shape", ["must be a list", "got a string"], None),
    ("another key", {"texts": ["a"], "model": "x"}, 422, "wrong_shape", ["unknown key(s) 'model'"], None),
]


@pytest.mark.parametrize("name, body, status, code, words, index", BAD, ids=[case[0] for case in BAD])
def test_bad_input_gets_its_status_and_message_and_the_server_goes_on(server, name, body, status, code, words, index):
    if body == "chunked":
        response = httpx.post(f"{server.url}/predict", content=_chunks(_BIG), timeout=30)
        assert "content-length" not in response.request.headers
    elif isinstance(body, bytes):
        response = httpx.post(f"{server.url}/predict", content=body, timeout=30)
    else:
        response = httpx.post(f"{server.url}/predict", content=json.dumps(body).encode(), timeout=30)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] == code and error.get("index") == index, error
    for word in words:
        assert word in error["error"], (word, error["error"])
    _still_serving(server)


def test_wrong_paths_and_methods_get_json_errors(server):
    missing = httpx.get(f"{server.url}/nope", timeout=30)
    assert missing.status_code == 404 and "POST /predict" in missing.json()["error"]
    wrong = httpx.get(f"{server.url}/predict", timeout=30)
    assert wrong.status_code == 405 and "GET is not allowed" in wrong.json()["error"]
    _still_serving(server)


def test_curl_style_form_content_type_is_read_as_json(server):
    response = httpx.post(f"{server.url}/predict", content=b'{"texts": ["curl -d sends this"]}',
                          headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30)
    assert len(_answers(response)) == 1


# -- load -------------------------------------------------------------------------------------------
async def _storm(url: str, bodies: list[list[str]], clients: int) -> list[httpx.Response | BaseException]:
    """Send every body (as ``{"texts": body}``) from ``clients`` concurrent clients; responses in order."""
    queue = list(enumerate(bodies))[::-1]
    out: list = [None] * len(bodies)
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=clients)) as client:
        async def worker():
            while queue:
                i, texts = queue.pop()
                try:
                    out[i] = await client.post(f"{url}/predict", json={"texts": texts})
                except Exception as exc:  # counted as lost below
                    out[i] = exc
        await asyncio.gather(*(worker() for _ in range(clients)))
    return out


def test_a_thousand_requests_from_64_clients_all_answered_each_with_its_own_texts(shared, server):
    pool = shared["texts"]
    known = {}
    for start in range(0, len(pool), 60):  # one by one would take long: these are in the cache already
        for text, answer in zip(pool[start:start + 60], _answers(server.predict(pool[start:start + 60]))):
            known[text] = answer
    rng = random.Random(7)
    bodies = []
    for i in range(1000):
        texts = rng.sample(pool, rng.randint(1, 4))
        if i % 4 == 0:  # a quarter of the requests bring a text nobody has seen: encoded in whatever batch it lands in
            texts.insert(rng.randint(0, len(texts)), f"{rng.choice(pool)} #storm{i}")
        bodies.append(texts)
    before = server.health()["served"]
    responses = asyncio.run(_storm(server.url, bodies, clients=64))
    lost = [r for r in responses if not isinstance(r, httpx.Response)]
    assert not lost, f"{len(lost)} requests got no response, e.g. {lost[0]!r}\n{server.logs()}"
    errors = [r for r in responses if r.status_code != 200]
    assert not errors, f"{len(errors)} errors, e.g. {errors[0].status_code} {errors[0].text}"
    new = {}
    for texts, response in zip(bodies, responses):
        answers = _answers(response)
        assert len(answers) == len(texts)
        for text, answer in zip(texts, answers):
            if text in known:
                assert answer[0] == known[text][0], (text, answer, known[text])
                np.testing.assert_allclose(answer[1], known[text][1], rtol=0, atol=1e-9)
            else:
                new[text] = answer
    assert len(new) == 250
    unseen = list(new)
    for start in range(0, len(unseen), 64):  # now from the cache: the vectors each was encoded to in the storm
        chunk = unseen[start:start + 64]
        for text, again in zip(chunk, _answers(server.predict(chunk))):
            assert again[0] == new[text][0], text
            np.testing.assert_allclose(again[1], new[text][1], rtol=0, atol=1e-9)
    after = server.health()["served"]
    assert after["requests"] - before["requests"] == 1000 + 4  # the storm and the 4 lookups above
    assert after["encoder_calls"] - before["encoder_calls"] < 500, after  # requests were batched together
    assert after["encoded"] - before["encoded"] == 250  # every new text once; the pool came from the cache


def _raw_request(url: str, body: bytes, *, send: int | None = None) -> socket.socket:
    """A client on a raw socket: sends the request (or only its first ``send`` bytes of body) and returns the socket."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + (body if send is None else body[:send]))
    return sock


def test_an_idle_connection_outlives_the_client_pools_expiry(server):
    """The server keeps an idle connection longer than httpx's pool does (5 s), so the pool closes it
    first. With uvicorn's default (5 s, the same) a pool can reuse a connection the server is closing:
    the likely cause of the one request in 1,000 that a CI run of the storm lost (not reproduced)."""
    import http.client

    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)

    def post_one() -> None:  # http.client does not reconnect: on a socket the server closed, this raises
        connection.request("POST", "/predict", body=json.dumps({"texts": ["kept open?"]}),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200, response.read()
        assert len(json.loads(response.read())["predictions"]) == 1

    try:
        post_one()
        sock = connection.sock
        time.sleep(6)  # idle past httpx's keepalive_expiry
        post_one()
        assert connection.sock is sock  # the same connection both times
    finally:
        connection.close()


def test_a_client_that_disconnects_does_not_break_its_batch(shared, server):
    long_texts = [" ".join(_new_texts(shared, 12, f"long{i}-")) for i in range(8)]  # slow to encode: 256 tokens each

    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            stayers = [asyncio.ensure_future(client.post(f"{server.url}/predict", json={"texts": texts}))
                       for texts in [_new_texts(shared, 2, f"stay{i}-") for i in range(8)]]
            await asyncio.sleep(0)
            quitter = _raw_request(server.url, json.dumps({"texts": _new_texts(shared, 4, "quit")}).encode())
            quitter.close()  # gone before its batch starts: dropped from the queue
            midway = _raw_request(server.url, json.dumps({"texts": long_texts}).encode())
            partial = _raw_request(server.url, json.dumps({"texts": ["never finished"]}).encode(), send=5)
            partial.close()  # gone in the middle of its body
            await asyncio.sleep(0.15)
            midway.close()  # gone while its batch is being encoded: its rows are dropped
            return await asyncio.gather(*stayers)

    before = server.health()["served"]
    responses = asyncio.run(scenario())
    for response in responses:
        assert len(_answers(response)) == 2
    deadline = time.monotonic() + 60
    while (health := server.health())["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    after = health["served"]
    assert after["requests"] - before["requests"] == 8, after
    assert after["clients_left"] - before["clients_left"] == 2, after  # the quitter and the one that left midway
    _still_serving(server)


def test_the_queue_limit_answers_503_and_the_server_goes_on(shared, server):
    slow = [" ".join(_new_texts(shared, 12, f"slow{i}-")) for i in range(64)]  # 64 texts of 256 tokens: busy a while
    cached = [(shared["texts"] * 2)[i:i + 60] for i in range(64)]  # 3,840 texts against --max-queued-texts 3000

    async def scenario():
        async with httpx.AsyncClient(timeout=120) as client:
            first = asyncio.ensure_future(client.post(f"{server.url}/predict", json={"texts": slow}))
            while (await client.get(f"{server.url}/health")).json()["in_flight"] < 1:
                await asyncio.sleep(0.01)
            return [await first] + await _storm(server.url, cached, clients=64)

    responses = asyncio.run(scenario())
    codes = [r.status_code for r in responses]
    assert set(codes) == {200, 503}, codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.json()["code"] == "busy" and "--max-queued-texts" in busy.json()["error"]
    assert busy.headers["retry-after"] == "1"
    _still_serving(server)


# -- start and stop ---------------------------------------------------------------------------------
def test_sigterm_under_load_finishes_the_requests_in_flight_and_exits_0(shared):
    running = Server(shared["tmp"], "--model", "minilm", "--head", str(shared["head"]), "--cache-dir",
                     str(shared["cache"]), "--max-batch-texts", "64", name="sigterm").wait_ready()
    bodies = [_new_texts(shared, 4, f"term{i}-") for i in range(64)]

    async def scenario():
        storm = asyncio.ensure_future(_storm(running.url, bodies, clients=64))
        async with httpx.AsyncClient(timeout=30) as client:
            while (await client.get(f"{running.url}/health")).json()["in_flight"] < 64:
                await asyncio.sleep(0.01)
        running.process.send_signal(signal.SIGTERM)  # all 64 are in: 256 texts to encode, a second or more of work
        return await storm

    try:
        responses = asyncio.run(scenario())
        rc = running.process.wait(120)
    finally:
        running.stop()
    assert rc == 0, running.logs()
    lost = [r for r in responses if not isinstance(r, httpx.Response)]
    assert not lost, f"{len(lost)} requests in flight got no answer, e.g. {lost[0]!r}\n{running.logs()}"
    assert [r.status_code for r in responses] == [200] * 64
    assert all(len(r.json()["predictions"]) == 4 for r in responses)
    assert "stopped: 64 requests, 256 texts" in running.err.read_text()
    with pytest.raises(httpx.ConnectError):  # the port is closed
        httpx.get(f"{running.url}/health", timeout=5)
    texts = [t for body in bodies for t in body]  # committed before it exited: nothing to encode again
    assert shared["embedder"].embed(texts)[1].encoded == 0


def test_a_head_of_another_model_is_refused_before_the_port_opens(shared, tmp_path):
    done = subprocess.run([sys.executable, "cli.py", "serve", "--model", "minilm", "--head", str(shared["other"]),
                           "--cache-dir", str(shared["cache"]), "--port", "0"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "serving" not in done.stdout and "Traceback" not in done.stderr
    source = tmp_path / "in.csv"
    source.write_text("text\nhello\n")
    scored = CliRunner().invoke(cli, ["score", str(source), "--model", "minilm", "--head", str(shared["other"]),
                                      "--cache-dir", str(shared["cache"]), "--output", str(tmp_path / "out.csv")])
    assert scored.exit_code == 1
    message = done.stderr.strip().splitlines()[-1]
    assert message == scored.output.strip().splitlines()[-1] and "another-384-d-model" in message, done.stderr


def test_a_port_in_use_is_an_error_that_says_so(shared):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "cli.py", "serve", "--model", "minilm", "--head", str(shared["head"]),
                               "--cache-dir", str(shared["cache"]), "--port", str(port)], cwd=REPO,
                              capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port 0" in done.stderr, done.stderr


# -- the drift check over the last requests (serving/drift.py) --------------------------------------
def test_a_head_without_a_drift_reference_says_the_check_does_not_run(server):
    drift = httpx.get(f"{server.url}/drift", timeout=30).json()
    assert drift["auc"] is None and not drift["fired"] and "keeps no drift reference" in drift["skipped"], drift
    assert drift["line"].startswith("drift check: not run")


def test_a_drift_window_too_small_for_a_verdict_is_refused_before_anything_loads():
    result = CliRunner().invoke(cli, ["serve", "--model", "minilm", "--drift-window", "5"])
    assert result.exit_code == 1 and "--drift-window must be 0 (no drift check) or at least 10" in result.output


def _lab_notes(n: int) -> list[str]:
    """``n`` distinct lines of another domain than tweets: a lab protocol's steps."""
    rng = random.Random(3)
    things = ["sodium chloride", "ethanol", "buffer B", "the enzyme mix", "distilled water", "agarose"]
    vessels = ["beaker", "flask", "centrifuge tube", "petri dish"]
    return [f"Step {i}: add {rng.randint(2, 90)} ml of {rng.choice(things)} to the {rng.choice(vessels)} and stir "
            f"for {rng.randint(1, 30)} minutes at {rng.randint(4, 95)} degrees." for i in range(n)]


def _drift_after(running, texts_seen: int, timeout: float = 120) -> dict:
    """``GET /drift`` once the check has looked at the window as it was after ``texts_seen`` texts."""
    deadline = time.monotonic() + timeout
    while True:
        drift = httpx.get(f"{running.url}/drift", timeout=30).json()
        if drift["checked_at_texts"] >= texts_seen:
            return drift
        if time.monotonic() > deadline:
            raise AssertionError(f"no drift check after {texts_seen} texts in {timeout} s: {drift}\n{running.logs()}")
        time.sleep(0.05)


def test_the_drift_check_fires_on_texts_of_another_domain_and_goes_quiet_again(shared, tmp_path):
    """A head keeping the sample tweets' vectors as its reference; a window of 100 texts, checked every 100.

    Lab notes first (the check fires), then tweets (the window now holds only them: quiet again).
    """
    from heads import get_head

    vectors, _ = shared["embedder"].embed(shared["texts"])
    labels = [next(r["label"] for r in shared["rows"] if r["text"] == t) for t in shared["texts"]]
    encoder = shared["embedder"].load()
    head = tmp_path / "head"
    get_head("logistic", C=1.0).fit(vectors, labels).set_drift_reference(vectors).save(
        head, fingerprint=encoder.fingerprint, model=encoder.description)
    running = Server(tmp_path, "--model", "minilm", "--head", str(head), "--cache-dir", str(shared["cache"]),
                     "--drift-window", "100", "--drift-every", "100", "--max-texts", "100", name="drift")
    try:
        running.wait_ready()
        before = httpx.get(f"{running.url}/drift", timeout=30).json()
        assert before["checks"] == 0 and before["auc"] is None and "too few rows" in before["line"], before
        verdicts = []
        for seen, texts in ((100, _lab_notes(100)), (200, shared["texts"][:100])):
            assert len(_answers(running.predict(texts))) == 100
            verdicts.append(_drift_after(running, seen))
    finally:
        rc = running.stop()
    assert rc == 0, running.logs()
    other, same = verdicts
    assert other["fired"] and other["auc"] > 0.95 and "differ from the head's training tweets" in other["line"], other
    assert not same["fired"] and same["auc"] < 0.65 and same["rows_scored"] == 100, same  # the window followed
    assert (same["rows_reference"], same["window"], same["checks"]) == (len(shared["texts"]), 100, 2), same
    logged = [line for line in running.err.read_text().splitlines() if "drift check" in line]
    assert len(logged) == 2 and "differ from the head's training tweets" in logged[0], running.logs()
    assert "look like the head's training tweets" in logged[1] and "the last 100 texts" in logged[1]


# -- the server's cache store -----------------------------------------------------------------------
def test_the_write_behind_store_answers_pending_vectors_and_commits_them_when_closed(tmp_path):
    """Lookups see vectors not yet committed; ``close_all`` commits them even in the middle of a flush wait."""
    from cache import EmbeddingStore
    from serving.store import WriteBehindStore

    def open_store():
        return EmbeddingStore(tmp_path, "f" * 64, 4)

    keys = [bytes([i]) * 16 for i in range(5)]
    vectors = np.arange(20, dtype=np.float32).reshape(5, 4)
    store = WriteBehindStore(open_store(), open_store, flush_seconds=600)  # nothing commits before close_all
    assert store.put_many(keys[:3], vectors[:3]) == 3
    found, got = store.get_many(keys)
    assert found.tolist() == [True, True, True, False, False]
    np.testing.assert_array_equal(got[:3], vectors[:3])
    other = open_store()
    assert not other.get_many(keys)[0].any()  # not committed yet
    started = time.monotonic()
    store.close_all()
    assert time.monotonic() - started < 30  # the writer's wait was cut short
    found, got = other.get_many(keys)
    assert found.tolist() == [True, True, True, False, False] and store.committed == 3
    np.testing.assert_array_equal(got[:3], vectors[:3])
    assert len(list((tmp_path / ("f" * 20) / "shards").iterdir())) == 1  # one shard file for the writer
    other.close()
