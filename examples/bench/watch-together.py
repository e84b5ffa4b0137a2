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
   `seeking` event to the target, and `seeked` there: the seek landed).

The call's own cameras play a 320×180 pattern at 10 fps (--camera-*): the three
browsers share the machine's two cores, where each participant of a real call has
a machine of their own. Prints per run and the medians over runs (with their range). Needs: python3 with
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
  for (const e of ['pause', 'playing', 'seeking', 'seeked']) v.addEventListener(e, () => w.events.push([e, now(), v.currentTime]));
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
    """Enters the watch-together frame of `page`, once it is there."""
    css = "iframe[data-plugin='watch-together']"
    page.call("POST", "/frame", {"id": None})
    kit.wait_until("the watch-together frame", lambda: page.js("return Boolean(document.querySelector(arguments[0]))", css), 20)
    element = page.find(css)
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


def one_run(args, binary, driver, scratch, video, camera):
    work = tempfile.mkdtemp(prefix="run-", dir=scratch)
    server = None
    pages = []
    profiles = []
    try:
        server = kit.Server(binary, work, args.port, args.media_port, plugins=True)
        # The plugins are compiled after the server is ready: wait for this one.
        kit.wait_until("the watch-together plugin", lambda: b"No such link" in kit.request("GET", server.base + "/p/watch-together/options?link=none")[1], 60, every=0.2)
        link = server.link("Watch together")
        url = f"{server.base}/j/{link}#k=" + "A" * 22

        def browser():
            profile = tempfile.mkdtemp(prefix="profile-", dir=work)
            profiles.append(profile)
            flags = kit.chromium_flags(profile, camera, "--ignore-certificate-errors")
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
            # As the browser tests do: a WebDriver click on a loaded machine has been
            # seen to go nowhere; click again, as a person would, at most 3 times.
            for attempt in range(3):
                clicked = time.time() * 1000
                host.click("#lobby li button.primary")
                try:
                    kit.wait_until(f"{name} admitted", lambda: name not in host.js("return document.getElementById('lobby').textContent"), 5)
                    break
                except kit.Timeout:
                    if attempt == 2:
                        raise
            frame(host)
            page.wait_text("#roster", "(you)")
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

        # A newcomer: Bo joins the call while the others watch.
        bo, admitted = guest("Bo")
        kit.wait_until("Bo's player given the video", lambda: bo.js("return window.__wt.src"), 20)
        got_video = bo.js("return window.__wt.src")
        time.sleep(3)
        taken = [p.js(TAKE_JS) for p in (host, ana, bo)]
        in_step = None
        first = taken[2]["samples"][0][0] if taken[2]["samples"] else None
        for s in taken[2]["samples"]:
            here = [position(taken[0]["samples"], s[0]), position(taken[1]["samples"], s[0])]
            if all(h is not None for h in here) and max(abs(s[1] - h) for h in here) < 0.150:
                in_step = s[0] - got_video
                break
        late_run = {
            "admitted_to_video_ms": got_video - admitted,
            # Bo's page is sampled from when WebDriver reached its frame: an
            # in-step time at the first sample is an upper bound.
            "newcomer_in_step_ms": in_step,
            "newcomer_first_sample_ms": None if first is None else first - got_video,
        }

        # A late joiner as the activity sees it: Ana stops watching, and comes back.
        ana.click(".watch .controls .leave")
        time.sleep(3)
        for p in (host, ana, bo):
            p.js(TAKE_JS)
        rejoined = ana.js("const t = performance.timeOrigin + performance.now(); document.querySelector('.watch .start').hidden || true; "
                          "[...document.querySelectorAll('button')].find((b) => b.textContent === 'Watch with them').click(); return t;")
        time.sleep(args.late_after + 0.5)
        taken = [p.js(TAKE_JS) for p in (host, ana, bo)]
        at = rejoined + args.late_after * 1000
        where = [position(t["samples"], at) for t in taken]
        late_run["rejoin_ms"] = None
        if all(w is not None for w in where):
            late_run["rejoin_ms"] = max(abs(where[1] - where[0]), abs(where[1] - where[2])) * 1000

        # Steady playback, all three.
        kit.wait_until("Ana playing", lambda: ana.js(playing), 30)
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
                    event = "seeking"
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

                    def first(name):
                        times = [e[1] for e in events if e[0] == name and e[1] >= given and (kind != "seek" or abs(e[2] - target) < 1)]
                        return times[0] - given if times else float("inf")

                    # A seek reaches a player when it starts seeking to the target;
                    # it lands when the player has the picture there (`seeked`).
                    latencies[kind].append(first("seeking" if kind == "seek" else event))
                    if kind == "seek":
                        latencies.setdefault("seek landed", []).append(first("seeked"))
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
    parser.add_argument("--camera-width", type=int, default=320)
    parser.add_argument("--camera-height", type=int, default=180)
    parser.add_argument("--camera-fps", type=int, default=10)
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
        # The call's own cameras, small: three browsers share the machine's cores,
        # where each participant of a real call has a machine of their own.
        camera = os.path.join(scratch, "camera.y4m")
        kit.write_pattern(camera, args.camera_width, args.camera_height, args.camera_fps)
        kit.log(f"machine: {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
        for n in range(1, args.runs + 1):
            kit.log(f"== run {n}; load {os.getloadavg()[0]:.2f}")
            run = one_run(args, args.bin, driver, scratch, video, camera)
            runs.append(run)
            c = run["commands"]
            kit.log(f"  drift median {statistics.median(run['drift']):.1f} ms, p95 {pct(run['drift'], 95):.1f} ms, max {max(run['drift']):.1f} ms "
                    f"({len(run['drift'])} pair-instants); late joiner {args.late_after:.0f} s after it joined: {run['late']['rejoin_ms']} ms; "
                    f"newcomer in step {run['late']['newcomer_in_step_ms']} ms after its player asked for the video (first sample at {run['late']['newcomer_first_sample_ms']} ms; "
                    f"video {run['late']['admitted_to_video_ms']:.0f} ms after admission); commands p95: "
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
    print(row(f"late joiner, {args.late_after:.0f} s after joining the activity", [r["late"]["rejoin_ms"] for r in runs if r["late"]["rejoin_ms"] is not None]))
    print(row("newcomer: in step (< 150 ms) after its player asked for the video", [r["late"]["newcomer_in_step_ms"] for r in runs if r["late"]["newcomer_in_step_ms"] is not None]))
    print(row("newcomer: its first sample", [r["late"]["newcomer_first_sample_ms"] for r in runs if r["late"]["newcomer_first_sample_ms"] is not None]))
    print(row("newcomer: admission to its player asking for the video", [r["late"]["admitted_to_video_ms"] for r in runs]))
    for kind in ("pause", "play", "seek", "seek landed"):
        print(row(f"{kind} reaches every other player, p95", [pct(r["commands"][kind], 95) for r in runs]))
        print(row(f"{kind} reaches every other player, median", [statistics.median(r["commands"][kind]) for r in runs]))


if __name__ == "__main__":
    main()
