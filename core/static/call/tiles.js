// The call page's video grid and its controls. A tile per stream: `local` (my
// camera), `local-screen`, and `p{participant}-{n}` from the SFU (media.js: n = 0
// camera and microphone, n = 1 screen). The state comes from call.js through
// `state()` (call/state.js).

/** Whose a stream is: `local` is mine (`me`), `p{participant}-{n}` someone's. */
export function participantOf(streamId, me) {
  if (streamId === "local") return me;
  const m = /^p(\d+)-(\d+)$/.exec(streamId);
  return m ? Number(m[1]) : null;
}

export class Tiles {
  /**
   * @param {object} hooks
   * @param {HTMLElement} hooks.grid
   * @param {(message: object) => void} hooks.send signaling
   * @param {() => object} hooks.state the call state now (call/state.js)
   * @param {object | null} hooks.encryption the CallCrypto, for whose frames fail to open
   */
  constructor({ grid, send, state, encryption }) {
    this.grid = grid;
    this.send = send;
    this.state = state;
    this.encryption = encryption;
    // The layer asked of the server for each participant's camera.
    this.sentQuality = new Map();
    // The others' audio: lowered while a plugin plays something (call/ducking.js).
    this.volume = 1;
  }

  /** Sets the volume of everyone else's audio, 0 to 1. */
  setVolume(volume) {
    this.volume = volume;
    for (const tile of this.grid.children) {
      if (tile.dataset.stream !== "local") tile.querySelector("video").volume = volume;
    }
  }

  /** The streams with a tile, in the grid's order. */
  ids() {
    return [...this.grid.children].map((t) => t.dataset.stream);
  }

  /** The `<video>` of `participant`'s camera tile (not their screen's), or null. */
  cameraVideo(participant) {
    const { me } = this.state();
    for (const tile of this.grid.children) {
      const id = tile.dataset.stream;
      const camera = id === "local" || /^p\d+-0$/.test(id);
      if (camera && participantOf(id, me) === participant) return tile.querySelector("video");
    }
    return null;
  }

  show(id, stream) {
    let tile = this.grid.querySelector(`[data-stream="${CSS.escape(id)}"]`);
    if (!tile) {
      tile = document.createElement("figure");
      tile.className = "tile";
      tile.dataset.stream = id;
      const video = document.createElement("video");
      video.autoplay = true;
      video.playsInline = true;
      // Your own tile never plays your microphone back.
      if (id === "local") video.muted = true;
      else video.volume = this.volume;
      const label = document.createElement("figcaption");
      tile.append(video, label);
      this.grid.append(tile);
    }
    const video = tile.querySelector("video");
    if (video.srcObject !== stream) video.srcObject = stream;
    video.play?.().catch(() => {});
    this.layout();
  }

  remove(id) {
    this.grid.querySelector(`[data-stream="${CSS.escape(id)}"]`)?.remove();
    this.layout();
  }

  /** Removes every tile but my camera's. */
  keepLocal() {
    for (const tile of [...this.grid.children]) if (tile.dataset.stream !== "local") tile.remove();
  }

  clear() {
    this.grid.replaceChildren();
    this.sentQuality.clear();
  }

  /** Names, speaker highlight, screen tiles first, a grid from 1 to 32 tiles, and the quality each tile needs. */
  layout() {
    const { roster, me, speaker } = this.state();
    const tiles = [...this.grid.children];
    for (const tile of tiles) {
      const id = tile.dataset.stream;
      const who = participantOf(id, me);
      const person = roster.find((p) => p.participant === who);
      const screen = /-1$/.test(id);
      const name = person ? person.name : "";
      let label = who === me ? `${name || "You"} (you)` : name;
      if (screen) label = `${name}'s screen`;
      if (person?.audio_muted && !screen) label += " · muted";
      const undecryptable = who !== me && who !== null && Boolean(this.encryption?.failed.has(who));
      if (undecryptable) label += " · can't decrypt";
      tile.classList.toggle("undecryptable", undecryptable);
      tile.querySelector("figcaption").textContent = label;
      tile.classList.toggle("speaking", who !== null && who === speaker && !screen);
      tile.classList.toggle("screen", screen);
      // A participant who left loses their tiles even before the offer removing them.
      if (id !== "local" && roster.length && !person) tile.remove();
    }
    const count = this.grid.children.length;
    const columns = Math.ceil(Math.sqrt(count));
    this.grid.style.setProperty("--columns", String(Math.max(1, columns)));
    this.grid.dataset.count = String(count);
    for (const tile of this.grid.children) {
      const who = participantOf(tile.dataset.stream, me);
      if (tile.dataset.stream === "local" || tile.classList.contains("screen") || who === null) continue;
      const width = tile.clientWidth || 640;
      const layer = width < 240 ? 0 : width < 480 ? 1 : 2;
      if (this.sentQuality.get(who) !== layer) {
        this.sentQuality.set(who, layer);
        this.send({ type: "set_quality", participant: who, layer });
      }
    }
  }
}

function toggle(button, on, onLabel, offLabel) {
  button.textContent = on ? onLabel : offLabel;
  button.setAttribute("aria-pressed", String(!on));
}

/** The call's buttons: microphone, camera, screen share, copy link. */
export class Controls {
  /**
   * @param {object} hooks
   * @param {import("/static/media.js").MediaSession} hooks.media
   * @param {Tiles} hooks.tiles
   * @param {(message: object) => void} hooks.send signaling
   * @param {(text: string) => void} hooks.note a notice on the call
   * @param {() => string} hooks.link the link with its secret
   */
  constructor({ media, tiles, send, note, link }) {
    this.media = media;
    this.send = send;
    this.micOn = true;
    this.camOn = true;
    this.screenButton = document.getElementById("toggle-screen");
    const micButton = document.getElementById("toggle-mic");
    const camButton = document.getElementById("toggle-camera");
    const copyButton = document.getElementById("copy-link");
    const screenButton = this.screenButton;

    micButton.addEventListener("click", () => {
      this.micOn = !this.micOn;
      media.setEnabled("audio", this.micOn);
      toggle(micButton, this.micOn, "Mute", "Unmute");
      this.sendMute();
      tiles.layout();
    });

    camButton.addEventListener("click", () => {
      this.camOn = !this.camOn;
      media.setEnabled("video", this.camOn);
      toggle(camButton, this.camOn, "Stop video", "Start video");
      this.sendMute();
    });

    screenButton.addEventListener("click", async () => {
      if (media.screen) {
        await media.stopScreen();
        tiles.remove(`local-screen`);
        this.screenOff();
        this.sendMute();
        return;
      }
      if (!navigator.mediaDevices?.getDisplayMedia) {
        note("This browser can't share its screen.");
        return;
      }
      try {
        const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
        stream.getVideoTracks()[0].addEventListener("ended", () => {
          if (media.screen === stream) screenButton.click();
        });
        await media.shareScreen(stream);
        toggle(screenButton, false, "Share screen", "Stop sharing");
        this.sendMute();
      } catch (error) {
        if (error.name !== "NotAllowedError") note(`Screen sharing could not start (${error.name}).`);
      }
    });

    copyButton.addEventListener("click", async () => {
      const url = link();
      try {
        await navigator.clipboard.writeText(url);
        copyButton.textContent = "Link copied";
      } catch {
        window.prompt("Copy this link:", url);
      }
      setTimeout(() => { copyButton.textContent = "Copy link"; }, 2000);
    });
  }

  /** Tells the server what this browser sends (docs/signaling.md, `mute`). */
  sendMute() {
    this.send({ type: "mute", audio: !this.micOn, video: !this.camOn, screen: Boolean(this.media.screen) });
  }

  /** The screen button back to "Share screen" (no share). */
  screenOff() {
    toggle(this.screenButton, true, "Share screen", "Stop sharing");
  }
}
