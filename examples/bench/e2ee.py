#!/usr/bin/env python3
"""The browser's cost of end-to-end encryption: a call of 4 in headless Chromium.

Each run starts a release server (`confab serve`, given with --bin) on a fresh
data directory on loopback, makes an admin user and an API token with its CLI and a
link with the REST API, then drives 4 Chromium sessions through one chromedriver
over the W3C WebDriver HTTP protocol: the host signs in and joins, and three guests
ask to join one after another and are admitted by the host. Every browser's fake
camera plays a generated y4m file (four colored quadrants, as in the E2EE browser
tests, with a square of changing noise moving across them so that the encoder has
something to send every frame; a still picture gives frames of a few bytes), and
its fake microphone a tone. The default, 640x480 at 10 fps, is what 2 cores carry
for 4 browsers without saturating: Chromium then sends two simulcast layers
(160x120, 320x240); at 320x240 it sends only one, of 80x60.

Once everyone decodes everyone's video, and after a warm-up, it measures a fixed
window:
  - CPU time of each browser's processes (utime + stime in /proc/{pid}/stat of the
    Chromium processes started for that browser's profile), of the server process,
    and the whole machine's busy time (/proc/stat);
  - getStats() of every page's two RTCPeerConnections (window.confab.media
    .publisher and .subscriber): video frames encoded and decoded per second,
    bytes sent and received, frame sizes, and how long the encoder was limited by
    CPU, so that two builds are shown to carry the same media;
  - with E2EE, the media worker's frames sealed and opened per second
    (window.confab.e2ee.workerStats()).
And for each guest, while it joins:
  - admission → first frame: from the host's click on Admit to the guest's page
    having decoded a frame of the host's video (getStats framesDecoded > 0, polled
    in the page every 50 ms): the same measure in builds with and without E2EE;
  - with E2EE, joined → first decrypted frame: window.confab.e2ee.firstFrame for
    the host's video (ms from the guest's `joined` message to the media worker's
    first opened frame). The worker stamps that frame with its own clock
    (performance.now() in a worker counts from the worker's start, not the page's),
    so the page's time of receiving the worker's `decrypted` message is recorded
    too, and joined → decrypted on the page's clock reported beside it;
  - why the first frame waited: the keyframe requests (PLI) the guest had sent and,
    with E2EE, the frames its worker could not open before then.

Several builds (--bin LABEL=PATH, repeated) are measured in turn, run by run, so
that anything else the machine does falls on all of them alike; the summary gives
medians over the runs (their range in brackets) and each build's difference from
the first, taken run by run. Every run is bounded in time (--run-timeout), and the
browsers, chromedriver, the server and all temporary files are removed at the end,
also when a run fails.

A/B against the commit before encryption (0409f63), dependencies reused:

    git worktree add /tmp/confab-pre-e2ee 0409f63
    (cd /tmp/confab-pre-e2ee && CARGO_TARGET_DIR=/work/main/target cargo build --release -p confab-core)
    cp target/release/confab /tmp/confab-pre-e2ee.bin
    git worktree remove /tmp/confab-pre-e2ee
    cargo build --release -p confab-core
    python3 examples/bench/e2ee.py --bin pre-e2ee=/tmp/confab-pre-e2ee.bin \\
        --bin e2ee=target/release/confab --runs 3

`COMMITS="0409f63 HEAD" bash examples/bench/e2ee.sh` does all of that.

Python 3 standard library only; needs Debian's chromium and chromium-driver.
"""

import argparse
import base64
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
PASSWORD = "a good long password"
HOST_EMAIL = "bench@example.org"
GUESTS = ["Ana", "Bo", "Cy"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The four quadrants of the pattern, in RGB: red, green, blue, white.
QUADRANTS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]


class Timeout(Exception):
    pass


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def request(method, url, body=None, headers=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def answers(url):
    """Whether `url` answers 200 (False while nothing listens yet)."""
    try:
        return request("GET", url, timeout=2)[0] == 200
    except OSError:
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, timeout, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Timeout(f"{what} within {timeout} s")
        time.sleep(every)


# ---- the fake camera ----------------------------------------------------------------


def yuv(rgb):
    r, g, b = rgb
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    return round(y), round(u), round(v)


def write_pattern(path, width, height, fps, seconds=2):
    """Four colored quadrants, and a square of fresh noise crossing them."""
    colors = [yuv(c) for c in QUADRANTS]
    rows = []
    for y in range(height):
        top = y < height // 2
        rows.append(bytes([colors[0 if top else 2][0]]) * (width // 2) + bytes([colors[1 if top else 3][0]]) * (width - width // 2))
    chroma = []
    for plane in (1, 2):
        out = bytearray()
        for y in range(height // 2):
            top = 2 * y < height // 2
            left, right = colors[0 if top else 2][plane], colors[1 if top else 3][plane]
            out += bytes([left]) * (width // 4) + bytes([right]) * (width // 2 - width // 4)
        chroma.append(bytes(out))
    side = max(16, width // 5) // 2 * 2
    frames = fps * seconds
    rng = random.Random(7)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(frames):
            f.write(b"FRAME\n")
            x0 = (width - side) * n // max(1, frames - 1)
            y0 = (height - side) // 2
            luma = bytearray(b"".join(rows))
            for y in range(y0, y0 + side):
                at = y * width + x0
                luma[at:at + side] = rng.randbytes(side)
            f.write(luma)
            for plane in chroma:
                f.write(plane)


# ---- WebDriver ----------------------------------------------------------------------


def chromium_flags(profile, camera, *extra):
    """Headless Chromium with a fresh profile and the fake camera playing `camera`."""
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
        "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900",
        f"--user-data-dir={profile}", *extra,
    ]


class WebDriverError(Exception):
    pass


class Page:
    """One Chromium session, through chromedriver's W3C WebDriver endpoint."""

    def __init__(self, driver, chromium, args, profile):
        self.driver = driver
        self.profile = profile
        caps = {"browserName": "chrome", "goog:chromeOptions": {"binary": chromium, "args": args}}
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}}, base=True, timeout=120)
        self.id = value["sessionId"]
        self.call("POST", "/timeouts", {"script": 30000, "pageLoad": 30000, "implicit": 0})

    def call(self, method, path, body=None, base=False, timeout=60):
        url = self.driver + (path if base else f"/session/{self.id}{path}")
        status, raw = request(method, url, {} if body is None and method == "POST" else body, timeout=timeout)
        value = json.loads(raw or b"{}").get("value")
        if status != 200:
            raise WebDriverError(f"{method} {path}: {status} {value}")
        return value

    def goto(self, url):
        self.call("POST", "/url", {"url": url})

    def find(self, css):
        return self.call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, css):
        self.call("POST", f"/element/{self.find(css)}/click", {})

    def fill(self, css, text):
        element = self.find(css)
        self.call("POST", f"/element/{element}/clear", {})
        self.call("POST", f"/element/{element}/value", {"text": text})

    def js(self, script, *args):
        return self.call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def js_async(self, script, *args):
        return self.call("POST", "/execute/async", {"script": script, "args": list(args)})

    def wait_text(self, css, needle, timeout=20):
        return wait_until(
            f"{css} showing {needle!r}",
            lambda: needle in (self.js("return document.querySelector(arguments[0])?.innerText ?? ''", css) or ""),
            timeout,
        )

    def me(self):
        return int(wait_until(
            "the roster naming me",
            lambda: self.js("return [...document.querySelectorAll('#roster li')].find((li) => li.textContent.includes('(you)'))?.dataset.participant ?? null"),
            20,
        ))

    def close(self):
        try:
            self.call("DELETE", "", timeout=20)
        except Exception:
            pass


# In the page: getStats of both connections, and the media worker's counters.
STATS_JS = """
const done = arguments[arguments.length - 1];
const media = window.confab.media;
const out = { pub: [], sub: [], worker: null };
const read = async (pc, list) => {
  if (!pc) return;
  const report = await pc.getStats();
  for (const s of report.values()) {
    if (s.type === 'outbound-rtp') list.push({
      kind: s.kind, rid: s.rid ?? '', t: s.timestamp, frames: s.framesEncoded ?? 0,
      bytes: s.bytesSent ?? 0, packets: s.packetsSent ?? 0, width: s.frameWidth ?? 0,
      height: s.frameHeight ?? 0, fps: s.framesPerSecond ?? 0, encodeTime: s.totalEncodeTime ?? 0,
      cpuLimited: s.qualityLimitationDurations?.cpu ?? 0, limitation: s.qualityLimitationReason ?? '',
      encoder: s.encoderImplementation ?? '', active: s.active ?? true });
    else if (s.type === 'inbound-rtp') list.push({
      kind: s.kind, stream: media.streamOfMid[s.mid] ?? `mid${s.mid}`, t: s.timestamp,
      frames: s.framesDecoded ?? 0, bytes: s.bytesReceived ?? 0, packets: s.packetsReceived ?? 0,
      lost: s.packetsLost ?? 0, width: s.frameWidth ?? 0, height: s.frameHeight ?? 0,
      decodeTime: s.totalDecodeTime ?? 0, dropped: s.framesDropped ?? 0 });
  }
};
Promise.all([read(media.publisher, out.pub), read(media.subscriber, out.sub)]).then(async () => {
  const e2ee = window.confab.e2ee;
  if (e2ee && e2ee.workerStats) out.worker = await e2ee.workerStats();
  done(out);
}, (e) => done({ error: String(e) }));
"""

# In a guest's page before it is admitted: when it is on the roster, when the
# media worker says the host's video opens (page clock), and when getStats first
# counts a decoded frame of the host's video; polled every 50 ms.
WATCH_JS = """
const [stream, host] = arguments;
const w = window.__bench = { onRoster: null, decoded: null, decryptedMsg: null, worker: null };
const now = () => performance.timeOrigin + performance.now();
const e2ee = window.confab.e2ee;
if (e2ee && e2ee.worker) e2ee.worker.addEventListener('message', (event) => {
  const m = event.data;
  if (m.op === 'decrypted' && m.participant === host && m.kind === 'video' && w.decryptedMsg === null) {
    w.decryptedMsg = now(); w.decryptedAt = performance.now(); w.workerAt = m.at;
  }
});
const media = window.confab.media;
let busy = false;
const timer = setInterval(() => {
  if (w.onRoster === null && (document.getElementById('roster')?.textContent ?? '').includes('(you)')) w.onRoster = now();
  const pc = media.subscriber;
  if (!pc || busy) return;
  busy = true;
  pc.getStats().then((report) => {
    busy = false;
    if (w.decoded !== null) return;
    for (const s of report.values()) {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && media.streamOfMid[s.mid] === stream && (s.framesDecoded ?? 0) > 0) {
        w.decoded = now();
        w.plis = s.pliCount ?? 0;
        clearInterval(timer);
        if (e2ee && e2ee.workerStats) e2ee.workerStats().then((stats) => { w.worker = stats; });
        else w.worker = {};
      }
    }
  }, () => { busy = false; });
}, 50);
"""

FIRST_JS = """
const [host] = arguments;
const w = window.__bench;
const e2ee = window.confab.e2ee;
const first = e2ee && e2ee.firstFrame ? e2ee.firstFrame.get(`${host}:video`) ?? null : null;
const joined = e2ee && typeof e2ee.joinedAt === 'number' ? e2ee.joinedAt : null;
return { ...w, firstFrame: first, joinedAt: joined,
         joinedEpoch: joined === null ? null : performance.timeOrigin + joined };
"""


# ---- processes ----------------------------------------------------------------------


def processes():
    """{pid: (ppid, cpu ticks, cmdline)} of every process now."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        out[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]), cmdline)
    return out


def cpu_by_owner(profiles, server_pid):
    """CPU ticks of each browser (by profile directory, its processes and their
    descendants), of the server, and of Chromium processes that are none of these."""
    procs = processes()
    owner = {}

    def find(pid, depth=0):
        if pid in owner:
            return owner[pid]
        found = None
        if pid in procs and depth < 64:
            ppid, _, cmdline = procs[pid]
            for i, profile in enumerate(profiles):
                if profile in cmdline:
                    found = i
                    break
            if found is None and ppid > 1:
                found = find(ppid, depth + 1)
        owner[pid] = found
        return found

    browsers, other = {}, {}
    for pid, (_, ticks, cmdline) in procs.items():
        i = find(pid)
        program = cmdline.split(" ")[0]
        if i is not None:
            browsers[pid] = (i, ticks, process_type(cmdline))
        elif "chromium" in program and "chromedriver" not in program:
            other[pid] = ticks
    server = procs[server_pid][1] if server_pid in procs else 0
    return {"browsers": browsers, "server": server, "other_chromium": other}


def process_type(cmdline):
    """A Chromium process's role: browser, renderer, gpu-process, utility:audio…"""
    kind, sub = "browser", ""
    for arg in cmdline.split(" "):
        if arg.startswith("--type="):
            kind = arg[len("--type="):]
        elif arg.startswith("--utility-sub-type="):
            sub = arg[len("--utility-sub-type="):].split(".")[-1]
    if "crashpad" in cmdline.split(" ")[0]:
        kind = "crashpad"
    return f"{kind}:{sub}" if sub else kind


def machine_ticks():
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts[:8]), idle


class CpuWindow:
    """CPU over a window, counting processes that started in it from zero."""

    def __init__(self, profiles, server_pid):
        self.profiles, self.server_pid = profiles, server_pid
        self.start = cpu_by_owner(profiles, server_pid)
        self.machine = machine_ticks()
        self.t = time.monotonic()

    def end(self):
        end = cpu_by_owner(self.profiles, self.server_pid)
        machine = machine_ticks()
        seconds = time.monotonic() - self.t
        # Per process: what it used since the start, or since it started. A process
        # that ended meanwhile takes its last ticks with it (counted as "gone").
        browsers = [0] * len(self.profiles)
        by_type = {}
        for pid, (i, ticks, kind) in end["browsers"].items():
            was = self.start["browsers"].get(pid)
            used = ticks - (was[1] if was and was[0] == i else 0)
            browsers[i] += used
            by_type[kind] = by_type.get(kind, 0) + used
        gone = [pid for pid in self.start["browsers"] if pid not in end["browsers"]]
        other = sum(t - self.start["other_chromium"].get(pid, 0) for pid, t in end["other_chromium"].items())
        cores = lambda ticks: ticks / CLK_TCK / seconds
        browsers = [cores(b) for b in browsers]
        total, idle = machine[0] - self.machine[0], machine[1] - self.machine[1]
        return {
            "seconds": seconds,
            "browser_cores": browsers,
            "browsers_total": sum(browsers),
            "by_type": {kind: cores(t) for kind, t in sorted(by_type.items(), key=lambda kv: -kv[1])},
            "server_cores": cores(end["server"] - self.start["server"]),
            "other_chromium_cores": cores(other),
            "machine_busy_cores": (total - idle) / total * os.cpu_count() if total else 0.0,
            "browser_processes_gone": len(gone),
        }


def kill_group(proc):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def kill_leftovers(profiles):
    """Browsers of our profiles that outlived their session and chromedriver."""
    for pid, (_, _, cmdline) in processes().items():
        if any(profile in cmdline for profile in profiles):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# ---- the server ---------------------------------------------------------------------


class Server:
    def __init__(self, binary, work, port, media_port, plugins=False):
        self.binary, self.port = binary, port
        self.base = f"http://127.0.0.1:{port}"
        self.env = dict(os.environ)
        self.env.update({
            "CONFAB_DATA_DIR": os.path.join(work, "data"),
            "CONFAB_SERVER_LISTEN": f"127.0.0.1:{port}",
            "CONFAB_SERVER_PUBLIC_URL": self.base,
            "CONFAB_LOG_LEVEL": "warn",
            "CONFAB_MEDIA_BIND": "127.0.0.1",
            "CONFAB_MEDIA_UDP_PORT": str(media_port),
            "CONFAB_MEDIA_TCP_PORT": str(media_port),
            # Only the call itself, unless asked: no bundled plugin on the page.
            "CONFAB_PLUGINS_BUNDLED": "true" if plugins else "false",
        })
        self.log = open(os.path.join(work, "serve.log"), "wb")
        self.proc = None
        self.cli(["user", "create", "--admin", "--email", HOST_EMAIL, "--name", "Bench", "--password-stdin"], PASSWORD + "\n")
        made = json.loads(self.cli(["token", "create", "--user", HOST_EMAIL, "--name", "bench", "--json"]))
        self.token = made["token"]
        self.proc = subprocess.Popen([binary, "serve"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until("the server ready", lambda: self.ready(), 30, every=0.05)

    def cli(self, args, stdin=None):
        done = subprocess.run([self.binary, *args], env=self.env, input=stdin, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"confab {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"the server exited ({self.proc.returncode}); see {self.log.name}")
        return answers(self.base + "/readyz")

    def link(self, title="E2EE benchmark"):
        status, raw = request("POST", self.base + "/api/v1/links", {"title": title, "max_participants": 8}, {"Authorization": f"Bearer {self.token}"})
        if status != 201:
            raise RuntimeError(f"link creation: {status} {raw[:200]}")
        return json.loads(raw)["id"]

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
        self.log.close()


# ---- one run --------------------------------------------------------------------------


def rate(a, b, key):
    dt = (b["t"] - a["t"]) / 1000
    return (b[key] - a[key]) / dt if dt > 0 else 0.0


def media_rates(before, after, seconds):
    """What a page sent and received between two getStats reads, per second."""
    out = {"enc_fps": 0.0, "dec_fps": 0.0, "sent_kbps": 0.0, "recv_kbps": 0.0, "audio_sent_kbps": 0.0,
           "audio_recv_kbps": 0.0, "recv_video_bytes": 0, "recv_video_frames": 0, "cpu_limited_s": 0.0,
           "layers": {}, "decoded": {}, "lost": 0}
    key = lambda s: (s["kind"], s.get("rid") or s.get("stream"))
    for side in ("pub", "sub"):
        old = {key(s): s for s in before[side]}
        for s in after[side]:
            a = old.get(key(s))
            if a is None:
                continue
            kbps = rate(a, s, "bytes") * 8 / 1000
            if side == "pub":
                if s["kind"] == "video":
                    out["enc_fps"] += rate(a, s, "frames")
                    out["sent_kbps"] += kbps
                    out["cpu_limited_s"] += s["cpuLimited"] - a["cpuLimited"]
                    if s["frames"] > a["frames"]:
                        out["layers"][s["rid"] or "-"] = f'{s["width"]}x{s["height"]}@{rate(a, s, "frames"):.1f}'
                else:
                    out["audio_sent_kbps"] += kbps
            else:
                if s["kind"] == "video":
                    out["dec_fps"] += rate(a, s, "frames")
                    out["recv_kbps"] += kbps
                    out["recv_video_bytes"] += s["bytes"] - a["bytes"]
                    out["recv_video_frames"] += s["frames"] - a["frames"]
                    out["lost"] += s["lost"] - a["lost"]
                    if s["frames"] > a["frames"]:
                        out["decoded"][s["stream"]] = f'{s["width"]}x{s["height"]}@{rate(a, s, "frames"):.1f}'
                else:
                    out["audio_recv_kbps"] += kbps
    wa, wb = before.get("worker"), after.get("worker")
    if wa and wb:
        out["sealed_per_s"] = (wb["sealed"] - wa["sealed"]) / seconds
        out["opened_per_s"] = (wb["opened"] - wa["opened"]) / seconds
        out["worker_failed"] = wb["failed"] - wa["failed"]
        out["worker_dropped"] = wb.get("dropped", 0) - wa.get("dropped", 0)
    return out


def stats(page):
    value = page.js_async(STATS_JS)
    if value.get("error"):
        raise RuntimeError(f"getStats: {value['error']}")
    return value


def sees_everyone(pages, ids):
    for page, me in zip(pages, ids):
        decoded = {s["stream"] for s in stats(page)["sub"] if s["kind"] == "video" and s["frames"] > 0}
        if not all(f"p{other}-0" in decoded for other in ids if other != me):
            return False
    return True


def one_run(args, label, binary, driver, camera, scratch):
    work = tempfile.mkdtemp(prefix="run-", dir=scratch)
    server = None
    pages = []
    profiles = []
    try:
        server = Server(binary, work, args.port, args.media_port)
        link = server.link()
        secret = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        url = f"{server.base}/j/{link}#k={secret}"

        def browser():
            profile = tempfile.mkdtemp(prefix="profile-", dir=work)
            profiles.append(profile)
            page = Page(driver, args.chromium, chromium_flags(profile, camera), profile)
            pages.append(page)
            return page

        host = browser()
        host.goto(f"{server.base}/login")
        host.fill("input[name=email]", HOST_EMAIL)
        host.fill("input[name=password]", PASSWORD)
        host.click("form[action='/login'] button[type=submit]")
        host.wait_text("main", "Your links")
        host.goto(url)
        host.click("#join-form button[type=submit]")
        host.wait_text("#roster", "(you)")
        host_id = host.me()
        ids = [host_id]
        joins = []
        for name in GUESTS:
            guest = browser()
            guest.goto(url)
            guest.wait_text("#join h1", "E2EE benchmark")
            guest.fill("input[name=name]", name)
            guest.click("#join-form button[type=submit]")
            host.wait_text("#lobby", name)
            guest.js(WATCH_JS, f"p{host_id}-0", host_id)
            clicked = time.time() * 1000
            host.click("#lobby li button.primary")
            seen = wait_until(f"{name} decoding the host's video", lambda: guest.js(FIRST_JS, host_id) if guest.js("return window.__bench.worker !== null") else None, 30, every=0.1)
            ids.append(guest.me())
            join = {"guest": name, "admit_to_decoded_ms": seen["decoded"] - clicked}
            if seen["onRoster"] is not None:
                join["admit_to_roster_ms"] = seen["onRoster"] - clicked
            if seen["joinedEpoch"] is not None:
                join["admit_to_joined_ms"] = seen["joinedEpoch"] - clicked
            if seen["firstFrame"] is not None:
                join["first_frame_ms"] = seen["firstFrame"]
            if seen["decryptedMsg"] is not None and seen["joinedAt"] is not None:
                join["joined_to_decrypted_page_ms"] = seen["decryptedAt"] - seen["joinedAt"]
                # Only workers that stamp their messages with their own clock say this.
                if seen.get("workerAt") is not None:
                    join["worker_clock_offset_ms"] = seen["decryptedAt"] - seen["workerAt"]
            # Why the first frame waited: keyframe requests sent, frames the worker
            # dropped for want of the sender's key before then.
            join["plis_before"] = seen["plis"]
            if "unknownKey" in seen["worker"]:
                join["undecryptable_before"] = seen["worker"]["unknownKey"] + seen["worker"]["wrongKey"]
            joins.append(join)
            log(f"  {name}: " + ", ".join(f"{k} {v:.0f}" for k, v in join.items() if k != "guest"))
        wait_until("everyone decoding everyone", lambda: sees_everyone(pages, ids), 60, every=0.5)
        time.sleep(args.warmup)

        window = CpuWindow(profiles, server.proc.pid)
        before = [stats(p) for p in pages]
        samples = []
        deadline = time.monotonic() + args.seconds
        last = CpuWindow(profiles, server.proc.pid)
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            second = last.end()
            samples.append(second["machine_busy_cores"])
            last = CpuWindow(profiles, server.proc.pid)
        after = [stats(p) for p in pages]
        cpu = window.end()
        media = [media_rates(a, b, cpu["seconds"]) for a, b in zip(before, after)]
        result = {"label": label, "cpu": cpu, "media": media, "joins": joins,
                  "machine_busy_per_second": samples, "ids": ids}
        return result
    finally:
        for page in pages:
            page.close()
        kill_leftovers(profiles)
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


# ---- the summary ----------------------------------------------------------------------


def run_figures(run):
    cpu, media = run["cpu"], run["media"]
    figures = {
        "browser CPU, all 4 (cores)": cpu["browsers_total"],
        "browser CPU, host (cores)": cpu["browser_cores"][0],
        "browser CPU, per guest (cores)": statistics.mean(cpu["browser_cores"][1:]),
        "  of which renderers, all 4 (cores)": cpu["by_type"].get("renderer", 0.0),
        "  of which GPU processes, all 4 (cores)": cpu["by_type"].get("gpu-process", 0.0),
        "  of which audio services, all 4 (cores)": cpu["by_type"].get("utility:AudioService", 0.0),
        "server CPU (cores)": cpu["server_cores"],
        "machine busy (cores of 2)": cpu["machine_busy_cores"],
        "machine busy, busiest second (cores of 2)": max(run["machine_busy_per_second"] or [0]),
        "machine busy beside browsers and server (cores)": cpu["machine_busy_cores"] - cpu["browsers_total"] - cpu["server_cores"],
        "other Chromium processes (cores)": cpu["other_chromium_cores"],
        "video frames encoded/s (all layers, 4 browsers)": sum(m["enc_fps"] for m in media),
        "video frames decoded/s (4 browsers)": sum(m["dec_fps"] for m in media),
        "video sent kbit/s (4 browsers)": sum(m["sent_kbps"] for m in media),
        "video received kbit/s (4 browsers)": sum(m["recv_kbps"] for m in media),
        "bytes per received video frame": sum(m["recv_video_bytes"] for m in media) / max(1, sum(m["recv_video_frames"] for m in media)),
        "audio sent kbit/s (4 browsers)": sum(m["audio_sent_kbps"] for m in media),
        "encoder CPU-limited (s, 4 browsers)": sum(m["cpu_limited_s"] for m in media),
    }
    if all("sealed_per_s" in m for m in media):
        figures["worker frames sealed/s (4 browsers)"] = sum(m["sealed_per_s"] for m in media)
        figures["worker frames opened/s (4 browsers)"] = sum(m["opened_per_s"] for m in media)
        figures["worker frames failed (4 browsers)"] = sum(m["worker_failed"] for m in media)
    return figures


JOIN_FIGURES = [
    ("admission → first decoded frame of the host (ms, getStats)", "admit_to_decoded_ms"),
    ("admission → on the roster (ms)", "admit_to_roster_ms"),
    ("admission → joined, E2EE (ms)", "admit_to_joined_ms"),
    ("joined → first decrypted frame, firstFrame (ms)", "first_frame_ms"),
    ("joined → first decrypted frame, page clock (ms)", "joined_to_decrypted_page_ms"),
    ("worker clock behind the page's (ms)", "worker_clock_offset_ms"),
    ("keyframe requests (PLI) before the first decoded frame", "plis_before"),
    ("frames the worker could not open before it", "undecryptable_before"),
]


def spread(values, digits, signed=False):
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    med = statistics.median(values)
    return fmt.format(med) + (f" ({fmt.format(min(values))}–{fmt.format(max(values))})" if len(values) > 1 else "")


def summary(results, labels):
    """Medians per build; beside them, each later build's difference from the first,
    run by run (runs of the builds alternate), as a median with its range."""
    digits = lambda name: 2 if "cores" in name else 0
    table = {label: {} for label in labels}
    by_run = {}
    joins = {label: {} for label in labels}
    for run in results:
        figures = run_figures(run)
        by_run[(run["label"], run["run"])] = figures
        for name, value in figures.items():
            table[run["label"]].setdefault(name, []).append(value)
        for join in run["joins"]:
            for name, key in JOIN_FIGURES:
                if key in join:
                    joins[run["label"]].setdefault(name, []).append(join[key])
    names = list(dict.fromkeys(n for label in labels for n in table[label]))
    head = ["what"] + [f"{label}, median (min–max)" for label in labels]
    head += [f"{label} − {labels[0]}, run by run" for label in labels[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    runs = sorted({run["run"] for run in results})
    for name in names:
        row = [name]
        for label in labels:
            values = table[label].get(name)
            row.append(spread(values, digits(name)) if values else "—")
        for label in labels[1:]:
            pairs = [(by_run.get((labels[0], n), {}).get(name), by_run.get((label, n), {}).get(name)) for n in runs]
            deltas = [b - a for a, b in pairs if a is not None and b is not None]
            row.append(spread(deltas, digits(name), signed=True) if deltas else "—")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Joining (each guest of each run; median (min–max), n):")
    for label in labels:
        for name, _ in JOIN_FIGURES:
            values = joins[label].get(name)
            if values:
                lines.append(f"  {label:>10}  {name}: {spread(values, 0)}, n={len(values)}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="See the header of this file.")
    parser.add_argument("--bin", action="append", required=True, metavar="[LABEL=]PATH",
                        help="a confab server binary; repeat to compare builds")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30, help="measured window")
    parser.add_argument("--warmup", type=float, default=10, help="after everyone sees everyone")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--port", type=int, default=18190)
    parser.add_argument("--media-port", type=int, default=18191)
    parser.add_argument("--run-timeout", type=float, default=300, help="seconds one run may take in all")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    parser.add_argument("--json", help="write every run's figures here")
    args = parser.parse_args()

    builds = []
    for spec in args.bin:
        label, _, path = spec.rpartition("=")
        path = os.path.abspath(path)
        if not os.access(path, os.X_OK):
            parser.error(f"{path} is not an executable")
        builds.append((label or os.path.basename(path), path))
    labels = [label for label, _ in builds]
    if len(set(labels)) != len(labels):
        parser.error("give each --bin its own LABEL=")

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    def overdue(_signum, _frame):
        raise Timeout(f"a run took longer than {args.run_timeout} s")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, overdue)
    scratch = tempfile.mkdtemp(prefix="confab-e2ee-bench-")
    driver_proc = None
    results = []
    try:
        camera = os.path.join(scratch, "pattern.y4m")
        write_pattern(camera, args.width, args.height, args.fps)
        driver_port = free_port()
        driver_log = open(os.path.join(scratch, "chromedriver.log"), "wb")
        # Chromium's own temporary files go into the scratch directory too.
        browser_tmp = os.path.join(scratch, "tmp")
        os.mkdir(browser_tmp)
        driver_proc = subprocess.Popen([args.chromedriver, f"--port={driver_port}"], stdout=driver_log,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, "TMPDIR": browser_tmp})
        driver = f"http://127.0.0.1:{driver_port}"
        wait_until("chromedriver listening", lambda: answers(driver + "/status") if driver_proc.poll() is None else sys.exit("chromedriver exited"), 20)
        log(f"machine: {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}; camera {args.width}x{args.height} at {args.fps} fps; "
            f"window {args.seconds:.0f} s after {args.warmup:.0f} s of warm-up")
        for n in range(1, args.runs + 1):
            for label, path in builds:
                log(f"== run {n}, {label} ({path}); load {os.getloadavg()[0]:.2f}")
                signal.alarm(int(args.run_timeout))
                try:
                    run = one_run(args, label, path, driver, camera, scratch)
                finally:
                    signal.alarm(0)
                run["run"] = n
                results.append(run)
                figures = run_figures(run)
                log("  " + "; ".join(f"{k} {v:.2f}" for k, v in figures.items()))
                log("  per browser (cores): " + ", ".join(f"{c:.2f}" for c in run["cpu"]["browser_cores"])
                    + f"; other Chromium {run['cpu']['other_chromium_cores']:.2f}")
                log("  by process type (cores, 4 browsers): " + ", ".join(f"{k} {v:.2f}" for k, v in run["cpu"]["by_type"].items()))
                log("  host sends " + ", ".join(f"{rid} {v}" for rid, v in sorted(run["media"][0]["layers"].items()))
                    + "; host decodes " + ", ".join(f"{s} {v}" for s, v in sorted(run["media"][0]["decoded"].items())))
                if args.json:
                    with open(args.json, "w") as f:
                        json.dump({"args": vars(args), "runs": results}, f, indent=1)
    finally:
        kill_group(driver_proc)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{len(results) // len(builds)} runs of {args.seconds:.0f} s per build; camera {args.width}x{args.height} at {args.fps} fps; "
          f"{os.cpu_count()} cores")
    print(summary(results, labels))


if __name__ == "__main__":
    main()
