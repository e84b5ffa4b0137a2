// The signaling client of the call page (docs/signaling.md): a WebSocket that
// carries JSON messages with `v: 1`, and takes the place on the call back after
// the connection dropped. It touches no DOM: the page hears from it through the
// callbacks it is given.

// Waits before each try to take our place back after the connection dropped. The
// server keeps the place for calls.reconnect_grace_secs (30 s by default) and answers
// resume_expired after that; these tries span a little longer.
export const RESUME_DELAYS_MS = [1000, 2000, 3000, 5000, 5000, 5000, 5000, 5000];

export class Signaling {
  /**
   * @param {object} hooks
   * @param {string} hooks.url the WebSocket's address (`wss://…/j/{id}/ws`)
   * @param {(message: object) => void} hooks.onMessage each message from the server
   * @param {() => string | null} hooks.resumeToken the token that takes my place on
   *   the call back, or null when there is none (not on the call)
   * @param {() => object | null} [hooks.askAgain] the join request to make again
   *   after a drop while waiting in the lobby (the server that held it may be
   *   gone), or null when not waiting
   * @param {() => void} hooks.onReconnecting the connection dropped; a try to take
   *   the place back is on its way
   * @param {() => void} hooks.onLost the connection dropped, and no try is left
   */
  constructor({ url, onMessage, resumeToken, askAgain = () => null, onReconnecting, onLost }) {
    this.url = url;
    this.onMessage = onMessage;
    this.resumeToken = resumeToken;
    this.askAgain = askAgain;
    this.onReconnecting = onReconnecting;
    this.onLost = onLost;
    this.socket = null;
    // Set while the page leaves on purpose (Leave, a revoked link): no reconnecting.
    this.leaving = false;
    this.resumeTries = 0;
  }

  /** Whether a message sent now leaves at once. */
  get open() {
    return Boolean(this.socket && this.socket.readyState === WebSocket.OPEN);
  }

  /** Sends `message` if the connection is open; drops it otherwise. */
  send(message) {
    if (this.open) this.socket.send(JSON.stringify({ v: 1, ...message }));
  }

  /** Sends `message` on the open connection, or opens one that starts with it. */
  sendOrConnect(message) {
    if (this.open) this.send(message);
    else this.connect(message);
  }

  /** Opens a connection whose first message is `first`. */
  connect(first) {
    this.socket = new WebSocket(this.url);
    this.socket.addEventListener("open", () => this.send(first));
    this.socket.addEventListener("message", (event) => this.dispatch(JSON.parse(event.data)));
    this.socket.addEventListener("close", () => {
      this.socket = null;
      if (this.leaving) return;
      const token = this.resumeToken();
      // On the call: back to the same place, without the lobby. Waiting in the
      // lobby: the same request again (a server of a cluster that held it may be
      // gone; another one takes it).
      const again = token ? { type: "resume", resume_token: token } : this.askAgain();
      if (again && this.resumeTries < RESUME_DELAYS_MS.length) {
        // A try while the network is still down fails the same way and leads to
        // the next.
        const delay = RESUME_DELAYS_MS[this.resumeTries];
        this.resumeTries += 1;
        this.onReconnecting();
        setTimeout(() => this.connect(again), delay);
      } else {
        this.onLost();
      }
    });
  }

  /** A message from the server. */
  dispatch(message) {
    // Back in place (or in the lobby again): a later drop gets every try again.
    if (message.type === "joined" || message.type === "waiting") this.resumeTries = 0;
    this.onMessage(message);
  }

  close() {
    this.socket?.close();
  }
}
