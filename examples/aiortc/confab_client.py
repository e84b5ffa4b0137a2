#!/usr/bin/env python3
"""A Confab participant that is not a browser: aiortc (PyPI) speaking the signaling
protocol of docs/signaling.md.

Each `--token` joins the call as the signed-in member that API token belongs to;
`--receive-only` makes one more participant that publishes nothing and only
receives. Publishers send Opus (a tone) and VP8 video of one solid colour per
participant. After `--seconds` the script prints, as JSON on standard output, what
each participant received from each other one: decoded video frames and their mean
colour, decoded audio frames and their peak level.

    pip install aiortc==1.16.0 websockets==15.0.1
    python3 confab_client.py --url http://127.0.0.1:8080 --link LINK_ID \\
        --token TOKEN_A --token TOKEN_B --receive-only TOKEN_C --seconds 10

Media is not end-to-end encrypted here: browsers encrypt every frame with keys
derived from the link's secret (docs/security.md), which needs a frame-level hook
aiortc does not have. Participants like these see and hear each other, not
browsers, and browsers do not decode them.
"""

import argparse
import array
import asyncio
import json
import logging
import math
import sys
from fractions import Fraction

import aioice.ice
import av
import websockets
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

log = logging.getLogger("confab-client")

# Solid colours (Y, U, V) the publishers send, one per participant in join order.
COLOURS = [(81, 90, 240), (41, 240, 110), (145, 54, 34), (210, 16, 146)]


def choose_candidates(candidates):
    """aioice leaves 127.0.0.1 out of its host candidates; tests run on loopback."""
    original = aioice.ice.get_host_addresses

    def addresses(use_ipv4, use_ipv6):
        found = original(use_ipv4, use_ipv6)
        return ["127.0.0.1"] if candidates == "loopback" else found

    aioice.ice.get_host_addresses = addresses


class ColourTrack(VideoStreamTrack):
    """320×240 frames of one colour, 30 per second."""

    def __init__(self, yuv):
        super().__init__()
        self.yuv = yuv

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(320, 240, "yuv420p")
        for plane, value in zip(frame.planes, self.yuv):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


class ToneTrack(AudioStreamTrack):
    """A 440 Hz tone, 20 ms per frame, 48 kHz mono."""

    RATE = 48000
    SAMPLES = 960

    def __init__(self):
        super().__init__()
        self.sent = 0

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if not hasattr(self, "_start"):
            self._start = asyncio.get_running_loop().time()
        wait = self._start + self.sent / self.RATE - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = array.array(
            "h",
            (
                int(8000 * math.sin(2 * math.pi * 440 * (self.sent + i) / self.RATE))
                for i in range(self.SAMPLES)
            ),
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.SAMPLES)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = self.RATE
        frame.pts = self.sent
        frame.time_base = Fraction(1, self.RATE)
        self.sent += self.SAMPLES
        return frame


def publisher_of(track_id):
    """Stream ids are `p{participant}-{n}`; the server's track ids start with them."""
    head = track_id.split("-", 1)[0]
    return int(head[1:]) if head.startswith("p") and head[1:].isdigit() else None


class Participant:
    def __init__(self, url, link, token, name, colour, publish=True):
        self.ws_url = url.replace("http", "ws", 1).rstrip("/") + f"/j/{link}/ws"
        self.token = token
        self.name = name
        self.colour = colour
        self.publish = publish
        self.participant = None
        self.pub = None
        self.sub = None
        self.received = {}
        self.errors = []
        self.tasks = []

    def stats(self, publisher):
        return self.received.setdefault(
            publisher,
            {"video_frames": 0, "colour": None, "audio_frames": 0, "audio_peak": 0},
        )

    async def consume(self, track):
        publisher = publisher_of(track.id)
        log.info("%s: %s track from participant %s", self.name, track.kind, publisher)
        stats = self.stats(publisher)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                stats["video_frames"] += 1
                stats["colour"] = [
                    round(sum(bytes(p)[: p.width]) / p.width) for p in frame.planes
                ]
            else:
                stats["audio_frames"] += 1
                samples = array.array("h", bytes(frame.planes[0]))
                stats["audio_peak"] = max(stats["audio_peak"], max(map(abs, samples)))

    async def send(self, ws, message):
        await ws.send(json.dumps({"v": 1, **message}))

    async def run(self, seconds):
        headers = {"Authorization": f"Bearer {self.token}"}
        async with websockets.connect(self.ws_url, additional_headers=headers) as ws:
            await self.send(ws, {"type": "join", "name": self.name})
            deadline = asyncio.get_running_loop().time() + seconds
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    raw = await asyncio.wait_for(ws.recv(), left)
                except asyncio.TimeoutError:
                    break
                await self.handle(ws, json.loads(raw))
            await self.send(ws, {"type": "leave"})
        for pc in (self.pub, self.sub):
            if pc:
                await pc.close()
        for task in self.tasks:
            task.cancel()

    async def handle(self, ws, message):
        kind = message.get("type")
        if kind == "joined":
            self.participant = message["participant"]
            if self.publish:
                await self.start_publishing(ws)
            else:
                await self.send(ws, {"type": "subscribe"})
        elif kind == "publish_answer":
            await self.pub.setRemoteDescription(
                RTCSessionDescription(sdp=message["sdp"], type="answer")
            )
        elif kind == "subscribe_offer":
            if self.sub is None:
                self.sub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                self.sub.on(
                    "track",
                    lambda track: self.tasks.append(
                        asyncio.ensure_future(self.consume(track))
                    ),
                )
            await self.sub.setRemoteDescription(
                RTCSessionDescription(sdp=message["sdp"], type="offer")
            )
            await self.sub.setLocalDescription(await self.sub.createAnswer())
            await self.send(
                ws, {"type": "subscribe_answer", "sdp": self.sub.localDescription.sdp}
            )
        elif kind == "error":
            log.warning("%s: error %s: %s", self.name, message["code"], message["message"])
            self.errors.append(message["code"])

    async def start_publishing(self, ws):
        self.pub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pub.addTransceiver(ToneTrack(), direction="sendonly")
        self.pub.addTransceiver(ColourTrack(self.colour), direction="sendonly")
        await self.pub.setLocalDescription(await self.pub.createOffer())
        await self.send(ws, {"type": "publish", "sdp": self.pub.localDescription.sdp})

    def report(self):
        return {
            "participant": self.participant,
            "name": self.name,
            "sent_colour": list(self.colour) if self.publish else None,
            "errors": self.errors,
            "received": {str(k): v for k, v in self.received.items()},
        }


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--link", required=True, help="the link's id")
    parser.add_argument("--token", action="append", default=[], help="a member's API token (publishes)")
    parser.add_argument("--receive-only", action="append", default=[], help="a member's API token (receives only)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--candidates", choices=["loopback", "all"], default="loopback")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    choose_candidates(args.candidates)

    people = [
        Participant(args.url, args.link, token, f"aiortc {i + 1}", COLOURS[i % len(COLOURS)])
        for i, token in enumerate(args.token)
    ] + [
        Participant(args.url, args.link, token, f"aiortc listener {i + 1}", None, publish=False)
        for i, token in enumerate(args.receive_only)
    ]
    # Join one after the other, as people do, then stay together for the rest.
    runs = []
    for person in people:
        runs.append(asyncio.ensure_future(person.run(args.seconds)))
        await asyncio.sleep(0.5)
    await asyncio.gather(*runs)
    json.dump([p.report() for p in people], sys.stdout)
    print()


if __name__ == "__main__":
    asyncio.run(main())
