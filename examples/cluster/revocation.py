"""How fast a revocation made through one node reaches the others.

Run by `bash examples/cluster/run.sh --bench`, with the nodes' ports as arguments
and TOKEN (an administrator's API token) and ROUNDS in the environment. Each round
creates a link through the first node, has every other node read its page (so
that they hold it in their caches, which live 30 s while the bus is connected),
revokes it through the first node, and polls the others' link pages until they
answer 410 Gone. Prints the median, p95 and maximum over the rounds, per node and
for the slowest node of each round, and the bus's own relay delay from /metrics.
"""

import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request

PORTS = [int(p) for p in sys.argv[1:]]
TOKEN = os.environ["TOKEN"]
ROUNDS = int(os.environ.get("ROUNDS", "20"))
LIMIT_S = 35  # past the connected caches' life: a change that never crossed the bus


def request(port, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main():
    first, others = PORTS[0], PORTS[1:]
    per_node = {port: [] for port in others}
    slowest = []
    for _ in range(ROUNDS):
        status, body = request(first, "POST", "/api/v1/links", {"title": "Revocation bench"})
        assert status == 201, (status, body)
        link = json.loads(body)["id"]
        for port in others:
            status, _ = request(port, "GET", f"/j/{link}")
            assert status == 200, status
        start = time.perf_counter()
        status, body = request(first, "POST", f"/api/v1/links/{link}/revoke")
        assert status == 200, (status, body)
        waiting = set(others)
        while waiting:
            for port in list(waiting):
                status, _ = request(port, "GET", f"/j/{link}")
                if status == 410:
                    per_node[port].append((time.perf_counter() - start) * 1000)
                    waiting.discard(port)
            if time.perf_counter() - start > LIMIT_S:
                sys.exit(f"nodes {sorted(waiting)} still served the revoked link after {LIMIT_S} s")
        slowest.append(max(per_node[port][-1] for port in others))

    def line(name, values):
        return (f"{name:<24} median {statistics.median(values):7.1f} ms   "
                f"p95 {percentile(values, 0.95):7.1f} ms   max {max(values):7.1f} ms")

    print(f"Revocation through node on :{first}, seen by the others (from the revoke request; {ROUNDS} rounds)")
    for port, values in per_node.items():
        print(line(f"  node on :{port}", values))
    print(line("  every node", slowest))
    for port in others:
        _, text = request(port, "GET", "/metrics")
        for row in text.decode().splitlines():
            if row.startswith("confab_cluster_change_delay_seconds_sum") or row.startswith(
                "confab_cluster_change_delay_seconds_count"
            ):
                print(f"  :{port} {row}")


main()
