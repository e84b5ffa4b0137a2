// Media for the call page: two RTCPeerConnections to Confab's SFU, negotiated over
// the signaling WebSocket (docs/signaling.md, "Media").
//
// - publish: this browser offers what it sends (microphone, camera as three
//   simulcast layers, screen, in that order); the server answers. All three
//   sections are offered from the start, so that turning a device on or sharing
//   the screen swaps a track and needs no renegotiation; the `mute` message tells
//   the server when the screen is shared.
// - subscribe: the server offers everyone else's tracks; this browser answers.
//   Each remote stream id is `p{participant}-{n}`: n = 0 camera and microphone,
//   n = 1 screen.
//
// Every sender and receiver goes through the call's end-to-end encryption
// (call-crypto.js): frames leave this browser sealed and are opened only here.

/** Simulcast layers for the camera, lowest first (the server picks one per viewer). */
const CAMERA_LAYERS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

export class MediaSession {
  #crypto;

  /**
   * @param {object} hooks
   * @param {(message: object) => void} hooks.send signaling
   * @param {(streamId: string, stream: MediaStream) => void} hooks.onStream a remote stream appeared or changed
   * @param {(streamId: string) => void} hooks.onStreamGone
   * @param {(state: string) => void} hooks.onConnection "connected", "reconnecting" or "failed"
   * @param {import("./call-crypto.js").CallCrypto} hooks.crypto seals and opens every frame
   *   (kept private: nothing reachable from this object holds a key)
   */
  constructor({ crypto, ...hooks }) {
    this.#crypto = crypto;
    this.hooks = hooks;
    this.publisher = null;
    this.subscriber = null;
    this.local = null;
    this.screen = null;
    this.audio = null;
    this.camera = null;
    this.screenTransceiver = null;
    this.negotiating = false;
    this.again = false;
    this.closed = false;
    this.simulcast = !window.confabNoSimulcast;
    this.streamOfMid = {};
  }

  /** Starts publishing `stream` (may be null: receive only). */
  async start(stream) {
    this.closed = false;
    this.local = stream;
    this.publisher?.close();
    this.subscriber?.close();
    this.subscriber = null;
    this.screenTransceiver = null;
    const pc = this.connection();
    this.publisher = pc;
    const audioTrack = stream?.getAudioTracks()[0] ?? null;
    const videoTrack = stream?.getVideoTracks()[0] ?? null;
    // Always offer both kinds so that turning a device on later needs no renegotiation.
    this.audio = pc.addTransceiver(audioTrack ?? "audio", {
      direction: "sendonly",
      streams: stream ? [stream] : [],
    });
    this.camera = pc.addTransceiver(videoTrack ?? "video", {
      direction: "sendonly",
      streams: stream ? [stream] : [],
      sendEncodings: this.simulcast ? CAMERA_LAYERS : undefined,
    });
    preferCodecs(this.camera);
    this.#crypto.attachSender(this.audio.sender, "audio");
    this.#crypto.attachSender(this.camera.sender, "video");
    // The screen's own stream id keeps it apart from the camera in every browser.
    this.screenTransceiver = pc.addTransceiver("video", {
      direction: "sendonly",
      streams: [new MediaStream()],
    });
    preferCodecs(this.screenTransceiver);
    this.#crypto.attachSender(this.screenTransceiver.sender, "video", 1);
    pc.addEventListener("connectionstatechange", () => this.watch(pc));
    await this.negotiate();
  }

  connection() {
    return new RTCPeerConnection({
      bundlePolicy: "max-bundle",
      rtcpMuxPolicy: "require",
      ...this.#crypto.connectionOptions(),
    });
  }

  watch(pc) {
    if (pc !== this.publisher || this.closed) return;
    const state = pc.connectionState;
    if (state === "connected") this.hooks.onConnection("connected");
    else if (state === "disconnected") this.hooks.onConnection("reconnecting");
    else if (state === "failed") this.hooks.onConnection("failed");
  }

  /** Sends a publish offer; one at a time. */
  async negotiate() {
    if (this.negotiating) {
      this.again = true;
      return;
    }
    this.negotiating = true;
    const pc = this.publisher;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this.hooks.send({ type: "publish", sdp: pc.localDescription.sdp });
  }

  async onPublishAnswer(sdp) {
    const pc = this.publisher;
    if (!pc || pc.signalingState !== "have-local-offer") return;
    await pc.setRemoteDescription({ type: "answer", sdp });
    this.negotiating = false;
    if (this.again) {
      this.again = false;
      await this.negotiate();
    }
  }

  async onSubscribeOffer(sdp) {
    // New ICE credentials: the server started this connection over (it had failed).
    const ufrag = /a=ice-ufrag:(\S+)/.exec(sdp)?.[1];
    if (this.subscriber && ufrag !== this.subscriberUfrag) {
      this.subscriber.close();
      this.subscriber = null;
    }
    this.subscriberUfrag = ufrag;
    if (!this.subscriber) {
      const pc = this.connection();
      this.subscriber = pc;
      pc.addEventListener("track", (event) => {
        const stream = event.streams[0];
        // Before any frame: nothing reaches the decoder unopened.
        this.#crypto.attachReceiver(event.receiver, event.track.kind, stream?.id ?? "");
        if (!stream) return;
        this.streamOfMid[event.transceiver.mid] = stream.id;
        this.hooks.onStream(stream.id, stream);
        stream.addEventListener("removetrack", () => {
          if (stream.getTracks().length === 0) this.hooks.onStreamGone(stream.id);
          else this.hooks.onStream(stream.id, stream);
        });
      });
    }
    const pc = this.subscriber;
    await pc.setRemoteDescription({ type: "offer", sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    this.hooks.send({ type: "subscribe_answer", sdp: pc.localDescription.sdp });
  }

  /** Mutes or unmutes a kind; the track keeps running so unmuting is instant. */
  setEnabled(kind, enabled) {
    const track = (kind === "audio" ? this.audio : this.camera)?.sender.track;
    if (track) track.enabled = enabled;
  }

  /** Swaps the camera or microphone without renegotiating. */
  async replaceTrack(kind, track) {
    const transceiver = kind === "audio" ? this.audio : this.camera;
    await transceiver?.sender.replaceTrack(track);
  }

  async shareScreen(stream) {
    if (!this.screenTransceiver) throw new Error("not connected");
    const [track] = stream.getVideoTracks();
    // Text stays sharp: the encoder keeps resolution and lowers the frame rate.
    if ("contentHint" in track) track.contentHint = "detail";
    await this.screenTransceiver.sender.replaceTrack(track);
    this.screen = stream;
  }

  async stopScreen() {
    const stream = this.screen;
    this.screen = null;
    stream?.getTracks().forEach((t) => t.stop());
    await this.screenTransceiver?.sender.replaceTrack(null);
  }

  /** Counters for tests and diagnostics: what arrives from each remote stream. */
  async inboundStats() {
    const result = {};
    if (!this.subscriber) return result;
    const report = await this.subscriber.getStats();
    for (const s of report.values()) {
      if (s.type !== "inbound-rtp") continue;
      const stream = this.streamOfMid[s.mid] ?? `mid${s.mid}`;
      result[`${stream}:${s.kind}`] = {
        stream,
        kind: s.kind,
        packets: s.packetsReceived ?? 0,
        framesDecoded: s.framesDecoded ?? 0,
        frameWidth: s.frameWidth ?? 0,
        framesReceived: s.framesReceived ?? 0,
        keyFramesDecoded: s.keyFramesDecoded ?? 0,
        packetsLost: s.packetsLost ?? 0,
        nacks: s.nackCount ?? 0,
        plis: s.pliCount ?? 0,
        firs: s.firCount ?? 0,
        codec: report.get(s.codecId)?.mimeType ?? "",
      };
    }
    return result;
  }

  close() {
    this.closed = true;
    this.publisher?.close();
    this.subscriber?.close();
    this.screen?.getTracks().forEach((t) => t.stop());
    this.publisher = null;
    this.subscriber = null;
    this.screen = null;
    this.negotiating = false;
    this.again = false;
  }
}

/**
 * VP8 only: every browser has it, the SFU switches simulcast layers on its
 * keyframes, and its frames stay decodable with all but their first bytes
 * encrypted (H.264's units would not survive that).
 */
function preferCodecs(transceiver) {
  const caps = RTCRtpSender.getCapabilities?.("video");
  if (!caps || !transceiver.setCodecPreferences) return;
  const codecs = caps.codecs.filter((c) => /vp8|rtx|red|ulpfec/i.test(c.mimeType));
  try {
    transceiver.setCodecPreferences(codecs);
  } catch {
    // Older browsers: keep their defaults; the server still answers VP8 or H.264.
  }
}
