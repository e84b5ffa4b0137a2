#!/usr/bin/env python3
"""watch-together in three headless Chromium browsers: drift, commands, a late joiner.

Each run starts a release server (embedded SQLite, bundled plugins) and the test
clip's HTTPS server (plugins/watch-together/tests/video_server.py), then:

1. the host signs in and joins; guest Ana asks and is admitted; the host starts the
   clip in the watch-together panel; both play it;
2. after WARMUP s, guest Bo joins the call (a late joiner): their player's position
   against the other two, 1 s after the activity's state reached Bo's page (when
   Bo's player asked for the video, from Resource Timing);
3. STEADY s of steady playback, all three: every page samples its player every 50 ms
   (`performance.timeOrigin + performance.now()`, `currentTime`, paused, rate); the
   browsers share the machine's clock, so the pairwise distance between the players
   at one instant is read from the samples (each extrapolated to the instant from
   the nearest earlier sample at its rate), every 50 ms, for the 3 pairs;
4. COMMANDS rounds of pause, play and seek (to a point 20 s on), each given in turn
   by one of the three pages: the time from the click, on its page's clock, to the
   moment each of the other two players shows it (`pause` event; `playing` event;
   `seeked` event at the target).

Prints per run and the medians over runs (with their range). Needs: python3 with
PyAV and cryptography (aiortc brings both), /usr/bin/chromium, /usr/bin/chromedriver,
and a release build: `cargo build --release -p confab-core`. Run as
`bash examples/bench/watch-together.sh`.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2ee as kit  # noqa: E402  (the WebDriver page, the server and helpers)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VIDEO_SERVER = os.path.join(ROOT, "plugins", "watch-together", "tests", "video_server.py")

SAMPLER_JS = """
const v = document.querySelector('.watch video');
if (!window.__wt) {
  const w = window.__wt = { samples: [], events: [], src: null };
  const now = () => performance.timeOrigin + performance.now();
  setInterval(() => {
    if (w.src === null && v.currentSrc) {
      // When the player asked for the video (its fetch), else when seen here.
      const fetched = performance.getEntriesByType('resource').find((r) => r.name === v.currentSrc);
      w.src = fetched ? performance.timeOrigin + fetched.startTime : now();
    }
    w.samples.push([now(), v.currentTime, v.paused ? 1 : 0, v.playbackRate]);
  }, 50);
  for (const e of ['pause', 'playing', 'seeked']) v.addEventListener(e, () => w.events.push([e, now(), v.currentTime]));
}
return true;
"""

TAKE_JS = """
const w = window.__wt;
const out = { samples: w.samples, events: w.events, src: w.src };
w.samples = []; w.events = [];
return out;
"""


def frame(page):
    """Enters the watch-together frame of `page`."""
    element = page.find("iframe[data-plugin='watch-together']")
    page.call("POST", "/frame", {"id": {kit.ELEMENT: element}})


def top(page):
    page.call("POST", "/frame/parent", {})


def position(samples, t):
    """Where the player was at `t`, from the last sample at or before it."""
    best = None
    for s in samples:
        if s[0] <= t:
            best = s
        else:
            break
    if best is None:
        return None
    ts, ct, paused, rate = best
    return ct + (0 if paused else (t - ts) / 1000 * rate)


def pairwise(series, start, end, step=50):
    """Distances (ms) between every pair of players at each instant in [start, end]."""
    out = []
    t = start
    while t <= end:
        where = [position(s, t) for s in series]
        if all(w is not None for w in where):
            for i in range(len(where)):
                for j in range(i + 1, len(where)):
                    out.append(abs(where[i] - where[j]) * 1000)
        t += step
    return out


def pct(values, p):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class VideoServer:
    def __init__(self, scratch):
        clip_dir = os.path.join(scratch, "clip")
        os.makedirs(clip_dir, exist_ok=True)
        if not os.path.exists(os.path.join(clip_dir, "clip.webm")):
            subprocess.run([sys.executable, VIDEO_SERVER, "--make", clip_dir, "--seconds", "240"], check=True, capture_output=True)
        self.proc = subprocess.Popen([sys.executable, VIDEO_SERVER, "--serve", clip_dir], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("ready "):
            raise RuntimeError(f"the video server said {line!r}")
        self.url = line.split(" ", 1)[1] + "clip.webm"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def one_run(args, binary, driver, scratch, video):
    work = tempfile.mkdtemp(prefix="run-", dir=scratch)
    server = None
    pages = []
    profiles = []
    try:
        server = kit.Server(binary, work, args.port, args.media_port, plugins=True)
        link = server.link("Watch together")
        url = f"{server.base}/j/{link}#k=" + "A" * 22

        def browser():
            profile = tempfile.mkdtemp(prefix="profile-", dir=work)
            profiles.append(profile)
            flags = [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900",
                "--ignore-certificate-errors", f"--user-data-dir={profile}",
            ]
            page = kit.Page(driver, args.chromium, flags, profile)
            pages.append(page)
            return page

        host = browser()
        host.goto(f"{server.base}/login")
        host.fill("input[name=email]", kit.HOST_EMAIL)
        host.fill("input[name=password]", kit.PASSWORD)
        host.click("form[action='/login'] button[type=submit]")
        host.wait_text("main", "Your links")
        host.goto(url)
        host.click("#join-form button[type=submit]")
        host.wait_text("#roster", "(you)")

        def guest(name):
            page = browser()
            page.goto(url)
            page.wait_text("#join h1", "Watch together")
            page.fill("input[name=name]", name)
            page.click("#join-form button[type=submit]")
            top(host)
            host.wait_text("#lobby", name)
            clicked = time.time() * 1000
            host.click("#lobby li button.primary")
            page.wait_text("#roster", "(you)")
            kit.wait_until(f"{name}'s watch-together frame", lambda: page.js("return Boolean(document.querySelector(\"iframe[data-plugin='watch-together']\"))"), 20)
            frame(page)
            kit.wait_until(f"{name}'s panel", lambda: page.js("return Boolean(document.querySelector('.watch video'))"), 20)
            page.js(SAMPLER_JS)
            return page, clicked

        ana, _ = guest("Ana")
        frame(host)
        kit.wait_until("the host's panel", lambda: host.js("return Boolean(document.querySelector('.watch video'))"), 20)
        host.js(SAMPLER_JS)
        host.fill(".watch .start input", video.url)
        host.click(".watch .start button")
        playing = "const v = document.querySelector('.watch video'); return !v.paused && v.currentTime > 1;"
        for page in (host, ana):
            kit.wait_until("playing", lambda page=page: page.js(playing), 30)
        time.sleep(args.warmup)

        # The late joiner.
        bo, admitted = guest("Bo")
        kit.wait_until("Bo's player given the video", lambda: bo.js("return window.__wt.src"), 20)
        got_video = bo.js("return window.__wt.src")
        time.sleep(max(0.0, (got_video + args.late_after * 1000 - time.time() * 1000) / 1000) + 0.2)
        taken = [p.js(TAKE_JS) for p in (host, ana, bo)]
        at = got_video + args.late_after * 1000
        where = [position(t["samples"], at) for t in taken]
        late = None
        if all(w is not None for w in where):
            late = max(abs(where[2] - where[0]), abs(where[2] - where[1])) * 1000
        late_run = {"admitted_to_video_ms": got_video - admitted, "late_joiner_ms": late}

        # Steady playback, all three.
        kit.wait_until("Bo playing", lambda: bo.js(playing), 30)
        time.sleep(2)
        for p in (host, ana, bo):
            p.js(TAKE_JS)
        time.sleep(args.steady)
        taken = [p.js(TAKE_JS) for p in (host, ana, bo)]
        series = [t["samples"] for t in taken]
        start = max(s[0][0] for s in series) + 100
        end = min(s[-1][0] for s in series)
        drift = pairwise(series, start, end)

        # Commands, each given by one page in turn.
        latencies = {"pause": [], "play": [], "seek": []}
        players = [host, ana, bo]
        for n in range(args.commands):
            for kind in ("pause", "play", "seek"):
                giver = players[(n * 3 + len(latencies[kind])) % 3]
                others = [p for p in players if p is not giver]
                for p in players:
                    p.js(TAKE_JS)
                if kind == "seek":
                    target = giver.js("return document.querySelector('.watch video').currentTime") + 20
                    if target > 200:
                        target = 10
                    given = giver.js(
                        "const bar = document.querySelector('.watch .controls input[type=range]');"
                        "bar.value = String(arguments[0]); const t = performance.timeOrigin + performance.now();"
                        "bar.dispatchEvent(new Event('change')); return t;", target)
                    event = "seeked"
                else:
                    given = giver.js("const t = performance.timeOrigin + performance.now(); document.querySelector('.watch .controls .play').click(); return t;")
                    event = "pause" if kind == "pause" else "playing"
                time.sleep(2.0)
                for p in others:
                    events = p.js(TAKE_JS)["events"]
                    times = [e[1] for e in events if e[0] == event and e[1] >= given and (kind != "seek" or abs(e[2] - target) < 1)]
                    latencies[kind].append(times[0] - given if times else float("inf"))
                time.sleep(1.0)
        return {"late": late_run, "drift": drift, "commands": latencies}
    finally:
        for page in pages:
            page.close()
        kit.kill_leftovers(profiles)
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="See the header of this file.")
    parser.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "confab"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=8, help="seconds of two players before the late joiner")
    parser.add_argument("--late-after", type=float, default=1.0, help="the late joiner is measured this long after it got the video")
    parser.add_argument("--steady", type=float, default=20, help="seconds of steady playback measured")
    parser.add_argument("--commands", type=int, default=4, help="rounds of pause, play and seek")
    parser.add_argument("--port", type=int, default=18290)
    parser.add_argument("--media-port", type=int, default=18291)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    parser.add_argument("--json", help="write every run's figures here")
    args = parser.parse_args()
    if not os.access(args.bin, os.X_OK):
        parser.error(f"{args.bin} is not an executable: cargo build --release -p confab-core")
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    scratch = tempfile.mkdtemp(prefix="confab-watch-bench-")
    driver_proc = None
    video = None
    runs = []
    try:
        driver_port = kit.free_port()
        driver_proc = subprocess.Popen([args.chromedriver, f"--port={driver_port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        driver = f"http://127.0.0.1:{driver_port}"
        kit.wait_until("chromedriver listening", lambda: kit.answers(driver + "/status"), 20)
        video = VideoServer(scratch)
        kit.log(f"machine: {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
        for n in range(1, args.runs + 1):
            kit.log(f"== run {n}; load {os.getloadavg()[0]:.2f}")
            run = one_run(args, args.bin, driver, scratch, video)
            runs.append(run)
            c = run["commands"]
            kit.log(f"  drift median {statistics.median(run['drift']):.1f} ms, p95 {pct(run['drift'], 95):.1f} ms, max {max(run['drift']):.1f} ms "
                    f"({len(run['drift'])} pair-instants); late joiner {run['late']['late_joiner_ms']:.1f} ms "
                    f"(video {run['late']['admitted_to_video_ms']:.0f} ms after admission); commands p95: "
                    + ", ".join(f"{k} {pct(v, 95):.0f} ms" for k, v in c.items()))
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"args": vars(args), "runs": runs}, f)
    finally:
        if video is not None:
            video.stop()
        kit.kill_group(driver_proc)
        shutil.rmtree(scratch, ignore_errors=True)

    def row(name, values, unit="ms"):
        med = statistics.median(values)
        return f"| {name} | {med:.1f} {unit} ({min(values):.1f}–{max(values):.1f}) |"

    print(f"{len(runs)} runs on {os.cpu_count()} cores; {args.steady:.0f} s steady playback of 3 players each")
    print("| figure | median over runs (range) |")
    print("| --- | --- |")
    print(row("pairwise drift, median", [statistics.median(r["drift"]) for r in runs]))
    print(row("pairwise drift, p95", [pct(r["drift"], 95) for r in runs]))
    print(row("pairwise drift, max", [max(r["drift"]) for r in runs]))
    print(row(f"late joiner {args.late_after:.0f} s after it got the video", [r["late"]["late_joiner_ms"] for r in runs]))
    print(row("late joiner: admission to video", [r["late"]["admitted_to_video_ms"] for r in runs]))
    for kind in ("pause", "play", "seek"):
        print(row(f"{kind} reaches every other player, p95", [pct(r["commands"][kind], 95) for r in runs]))
        print(row(f"{kind} reaches every other player, median", [statistics.median(r["commands"][kind]) for r in runs]))


if __name__ == "__main__":
    main()
