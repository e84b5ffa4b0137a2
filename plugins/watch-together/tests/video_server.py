#!/usr/bin/env python3
"""A test video and an HTTPS server for it, for the watch-together browser test and
benchmark (the player accepts only https:// addresses).

    python3 video_server.py --make DIR [--seconds 120]   # writes DIR/clip.webm
    python3 video_server.py --serve DIR [--port 0] [--host 127.0.0.1]
                                                          # prints "ready https://HOST:PORT/"

The clip is VP8 and Opus in WebM (PyAV, which aiortc brings): a bar that crosses
the picture every second on a background whose colour changes every second, and
a tone. The server answers
`Range` requests (206), as a player's seeks need, with a self-signed certificate
made at start (the `cryptography` package, which aiortc brings too); browsers are
started with --ignore-certificate-errors. It serves only files of DIR, on
loopback (or --host, a test's own veth address), and stops on SIGTERM or when its
standard input closes.

A test makes one viewer buffer by writing lines to its standard input:

    slow ADDRESS BYTES_PER_S   # answers to ADDRESS trickle out at that rate
    fast                       # every answer at full speed again

Each command is acknowledged with a line "ok" on standard output.
"""

import argparse
import datetime
import http.server
import ipaddress
import os
import re
import signal
import ssl
import sys
import tempfile
import threading
import time
from fractions import Fraction


def make(directory, seconds, width=320, height=180, fps=25):
    import math
    import struct

    import av

    path = os.path.join(directory, "clip.webm")
    container = av.open(path, mode="w", format="webm")
    video = container.add_stream("libvpx", rate=fps)
    video.width, video.height = width, height
    video.pix_fmt = "yuv420p"
    video.bit_rate = 300_000
    video.options = {"deadline": "realtime", "cpu-used": "8", "g": str(fps)}
    audio = container.add_stream("libopus", rate=48_000)
    audio.layout = "mono"
    audio.bit_rate = 32_000
    samples_per_frame = 960
    audio_pts = 0
    # A 480 Hz tone: a whole number of periods in each 20 ms frame.
    pcm = b"".join(
        struct.pack("<h", int(6000 * math.sin(2 * math.pi * 480 * i / 48_000))) for i in range(samples_per_frame)
    )

    def plane(frame, index, rows, row):
        """Fills plane `index` of `frame` with `rows` copies of `row` (padded)."""
        p = frame.planes[index]
        pad = bytes(p.line_size - len(row))
        p.update((row + pad) * rows)

    for n in range(seconds * fps):
        second = n // fps
        # A background whose shade changes every second, and a bar that crosses
        # the picture once a second.
        y = (second * 53) % 160 + 40
        x = int((n % fps) * width / fps)
        luma = bytearray([y]) * width
        luma[x : x + 8] = bytes([235]) * len(luma[x : x + 8])
        vf = av.VideoFrame(width, height, "yuv420p")
        plane(vf, 0, height, bytes(luma))
        plane(vf, 1, height // 2, bytes([(second * 97) % 200 + 28]) * (width // 2))
        plane(vf, 2, height // 2, bytes([(second * 31) % 200 + 28]) * (width // 2))
        vf.pts = n
        vf.time_base = Fraction(1, fps)
        for packet in video.encode(vf):
            container.mux(packet)
        # Audio up to this frame's end.
        while audio_pts < (n + 1) * 48_000 // fps:
            af = av.AudioFrame(format="s16", layout="mono", samples=samples_per_frame)
            af.planes[0].update(pcm)
            af.sample_rate = 48_000
            af.pts = audio_pts
            af.time_base = Fraction(1, 48_000)
            for packet in audio.encode(af):
                container.mux(packet)
            audio_pts += samples_per_frame
    for stream in (video, audio):
        for packet in stream.encode(None):
            container.mux(packet)
    container.close()
    return path


def certificate(directory, host="127.0.0.1"):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
TYPES = {".webm": "video/webm", ".mp4": "video/mp4", ".ogg": "video/ogg"}


class Throttle:
    """The client addresses whose answers trickle, and at what rate (bytes a second)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.slow = {}

    def rate(self, address):
        with self.lock:
            return self.slow.get(address)

    def command(self, line):
        words = line.split()
        with self.lock:
            if len(words) == 3 and words[0] == "slow":
                self.slow[words[1]] = max(1, int(words[2]))
            elif words == ["fast"]:
                self.slow.clear()
            else:
                return False
        return True


def handler_for(root, throttle):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):
            pass

        def do_HEAD(self):
            self.answer(body=False)

        def do_GET(self):
            self.answer(body=True)

        def answer(self, body):
            name = os.path.basename(self.path.split("?", 1)[0])
            path = os.path.join(root, name)
            if not name or not os.path.isfile(path):
                self.send_error(404)
                return
            size = os.path.getsize(path)
            start, end, status = 0, size - 1, 200
            wanted = self.headers.get("Range")
            if wanted:
                m = RANGE.match(wanted.strip())
                if not m or (not m.group(1) and not m.group(2)):
                    self.send_error(416)
                    return
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                else:
                    start = max(0, size - int(m.group(2)))
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", TYPES.get(os.path.splitext(name)[1], "application/octet-stream"))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if not body:
                return
            with open(path, "rb") as f:
                f.seek(start)
                left = end - start + 1
                try:
                    while left > 0:
                        rate = throttle.rate(self.client_address[0])
                        # Slow: a tenth of a second's worth at a time.
                        chunk = f.read(min(65536 if rate is None else max(1, rate // 10), left))
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        left -= len(chunk)
                        if rate is not None:
                            self.wfile.flush()
                            time.sleep(len(chunk) / rate)
                except (BrokenPipeError, ConnectionResetError):
                    pass

    return Handler


def serve(root, port, host):
    scratch = tempfile.mkdtemp(prefix="confab-video-")
    cert, key = certificate(scratch, host)
    throttle = Throttle()
    server = http.server.ThreadingHTTPServer((host, port), handler_for(root, throttle))
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"ready https://{host}:{server.server_address[1]}/", flush=True)

    def stop(*_args):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    def commands():
        for line in sys.stdin:
            if line.strip():
                print("ok" if throttle.command(line) else f"unknown command {line.strip()!r}", flush=True)
        # The parent went away (its end of our standard input closed): stop too.
        stop()

    threading.Thread(target=commands, daemon=True).start()
    server.serve_forever()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--make", metavar="DIR")
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--serve", metavar="DIR")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (a loopback or test veth address)")
    args = parser.parse_args()
    if args.make:
        print(make(args.make, args.seconds), flush=True)
    if args.serve:
        serve(args.serve, args.port, args.host)


if __name__ == "__main__":
    main()
