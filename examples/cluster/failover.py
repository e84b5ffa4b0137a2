"""How long a call takes to come back after its node is killed (SIGKILL).

Run by `bash examples/cluster/run.sh --failover`, with the running nodes' ports as
arguments and, in the environment, TOKEN (an administrator's API token), CONFAB
(the binary), ROUNDS (default 20) and the cluster's settings (CONFAB_DATABASE_URL,
CONFAB_CLUSTER_NATS_URL, CONFAB_CLUSTER_SUBJECT_PREFIX), which the extra node
started each round inherits.

Each round starts one more node (the victim), creates a link, and has member A
join through the victim (so the victim hosts the call) and member B through the
first running node (relayed to the victim). Then it kills the victim and does
what the call page does: each member, once its connection is closed, waits 1 s,
then 2 s, 3 s, 5 s… between tries, and resumes through the first running node
with its resume token. The time runs from the kill to the moment both are back
on the call (`joined`). Prints the median, p95 and maximum over the rounds.
"""

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

PORTS = [int(p) for p in sys.argv[1:]]
TOKEN = os.environ["TOKEN"]
CONFAB = os.environ["CONFAB"]
ROUNDS = int(os.environ.get("ROUNDS", "20"))
RESUME_DELAYS_S = [1, 2, 3, 5, 5, 5, 5, 5]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=5) as res:
        return json.loads(res.read())


def start_victim(round_no, work):
    port = free_port()
    env = dict(os.environ)
    env.update(
        CONFAB_CLUSTER_NODE_ID=f"victim-{round_no}",
        CONFAB_DATA_DIR=os.path.join(work, f"victim-{round_no}"),
        CONFAB_SERVER_LISTEN=f"127.0.0.1:{port}",
        CONFAB_MEDIA_UDP_PORT="0",
        CONFAB_MEDIA_TCP_PORT="0",
    )
    log = open(os.path.join(work, f"victim-{round_no}.log"), "w")
    process = subprocess.Popen([CONFAB, "serve"], env=env, stdout=log, stderr=log)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return process, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"victim-{round_no} did not start; see {log.name}")


async def join(port, link):
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/j/{link}/ws",
        additional_headers={"Authorization": f"Bearer {TOKEN}"},
    )
    await ws.send(json.dumps({"v": 1, "type": "join"}))
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == "joined":
            return ws, message
        if message["type"] == "error":
            raise SystemExit(f"join refused: {message}")


async def come_back(ws, joined, port, link):
    """What the page does: wait for the close, then resume with backoff."""
    try:
        while True:
            await ws.recv()
    except websockets.ConnectionClosed:
        pass
    for delay in RESUME_DELAYS_S:
        await asyncio.sleep(delay)
        try:
            again = await websockets.connect(
                f"ws://127.0.0.1:{port}/j/{link}/ws",
                additional_headers={"Authorization": f"Bearer {TOKEN}"},
            )
            await again.send(json.dumps({"v": 1, "type": "resume", "resume_token": joined["resume_token"]}))
            while True:
                message = json.loads(await again.recv())
                if message["type"] == "joined":
                    return time.perf_counter(), again
                if message["type"] == "error":
                    break
        except websockets.ConnectionClosed:
            continue
    raise SystemExit("never came back")


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main():
    survivor = PORTS[0]
    times = []
    with tempfile.TemporaryDirectory() as work:
        for round_no in range(1, ROUNDS + 1):
            victim, port = start_victim(round_no, work)
            link = api(survivor, "POST", "/api/v1/links", {"title": "Failover bench"})["id"]
            a, a_joined = await join(port, link)
            b, b_joined = await join(survivor, link)
            await asyncio.sleep(0.5)  # the places are kept off the call's task
            back = [
                asyncio.create_task(come_back(a, a_joined, survivor, link)),
                asyncio.create_task(come_back(b, b_joined, survivor, link)),
            ]
            killed = time.perf_counter()
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            results = await asyncio.gather(*back)
            took = max(at for at, _ in results) - killed
            times.append(took)
            print(f"round {round_no:2}: both back {took:.2f} s after the kill")
            for _, ws in results:
                await ws.send(json.dumps({"v": 1, "type": "leave"}))
                await ws.close()
    print(
        f"SIGKILL to every participant back on the call, {ROUNDS} kills: "
        f"median {statistics.median(times):.2f} s, p95 {percentile(times, 0.95):.2f} s, "
        f"max {max(times):.2f} s"
    )


if __name__ == "__main__":
    asyncio.run(main())
