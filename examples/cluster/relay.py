"""What the relay adds to signaling: a call hosted by the first node, a second
participant on the same node (direct) or on another node (relayed).

Run by `bash examples/cluster/run.sh --bench`, with the nodes' ports as arguments
and TOKEN (an administrator's API token), MESSAGES (per run, default 300) and RUNS
(default 3) in the environment. Each run: member A joins through the first node
(so that node hosts the call), member B joins through the first node (direct)
or the second (relayed); B sends A an `e2ee` message, A sends it straight back,
B times the round trip; at 15 messages a second, under the signaling rate limit.
Direct and relayed runs alternate. Prints the round trip's p50 and p99 per run,
the medians over the runs, and what the relay adds.
"""

import asyncio
import json
import os
import statistics
import sys
import time
import urllib.request

import websockets

PORTS = [int(p) for p in sys.argv[1:]]
TOKEN = os.environ["TOKEN"]
MESSAGES = int(os.environ.get("MESSAGES", "300"))
RUNS = int(os.environ.get("RUNS", "3"))
INTERVAL_S = 1 / 15


def create_link(port):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/links",
        data=json.dumps({"title": "Relay bench"}).encode(),
        method="POST",
    )
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=5) as res:
        return json.loads(res.read())["id"]


async def connect(port, link):
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/j/{link}/ws",
        additional_headers={"Authorization": f"Bearer {TOKEN}"},
        max_size=1 << 20,
    )
    await ws.send(json.dumps({"v": 1, "type": "join"}))
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == "joined":
            return ws, message["participant"]
        if message["type"] == "error":
            raise SystemExit(f"join refused: {message}")


async def next_e2ee(ws):
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == "e2ee":
            return message


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def one_run(b_port):
    link = create_link(PORTS[0])
    a, a_id = await connect(PORTS[0], link)
    b, b_id = await connect(b_port, link)

    async def echo():
        while True:
            message = await next_e2ee(a)
            await a.send(json.dumps({"v": 1, "type": "e2ee", "to": b_id, "payload": message["payload"]}))

    echoing = asyncio.create_task(echo())
    times = []
    for i in range(MESSAGES):
        payload = f"{i:08d}".encode().hex()
        start = time.perf_counter()
        await b.send(json.dumps({"v": 1, "type": "e2ee", "to": a_id, "payload": payload}))
        while (await next_e2ee(b))["payload"] != payload:
            pass
        times.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(max(0.0, INTERVAL_S - (time.perf_counter() - start)))
    echoing.cancel()
    for ws in (a, b):
        await ws.send(json.dumps({"v": 1, "type": "leave"}))
        await ws.close()
    return percentile(times, 0.5), percentile(times, 0.99)


async def main():
    runs = {"direct": [], "relayed": []}
    for run in range(RUNS):
        for kind, port in (("direct", PORTS[0]), ("relayed", PORTS[1])):
            p50, p99 = await one_run(port)
            runs[kind].append((p50, p99))
            print(f"run {run + 1} {kind:8} round trip p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    summary = {}
    for kind, values in runs.items():
        p50s = [v[0] for v in values]
        p99s = [v[1] for v in values]
        summary[kind] = (statistics.median(p50s), statistics.median(p99s))
        print(
            f"{kind:8} round trip, median of {RUNS} runs [lowest–highest]: "
            f"p50 {summary[kind][0]:.2f} ms [{min(p50s):.2f}–{max(p50s):.2f}], "
            f"p99 {summary[kind][1]:.2f} ms [{min(p99s):.2f}–{max(p99s):.2f}]"
        )
    added50 = summary["relayed"][0] - summary["direct"][0]
    added99 = summary["relayed"][1] - summary["direct"][1]
    print(
        f"the relay adds per round trip (two relayed hops): p50 {added50:.2f} ms, p99 {added99:.2f} ms; "
        f"per message one way: p50 {added50 / 2:.2f} ms, p99 {added99 / 2:.2f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
