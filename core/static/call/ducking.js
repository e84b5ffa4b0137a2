// Call audio lowered while a plugin plays something (watch-together's video): a
// plugin's frame asks (`plugin.duckCallAudio(true)`), this page lowers the other
// participants' audio and says so, with a button that puts it back. The person's
// choice wins: once they restored it, no plugin lowers it again on this page
// until they ask for it ("Lower call audio while videos play").

/** The call's volume while a plugin lowers it. */
export const DUCKED_VOLUME = 0.3;

export class Ducking {
  /**
   * @param {object} hooks
   * @param {(volume: number) => void} hooks.setVolume the call's audio (tiles.js)
   * @param {HTMLElement} hooks.before where the page's line goes (above it)
   */
  constructor({ setVolume, before }) {
    this.setVolume = setVolume;
    this.before = before;
    this.asking = new Set();
    this.declined = false;
    this.line = null;
  }

  /** `plugin` asks for the call's audio lowered (`on`) or no longer. */
  ask(plugin, on) {
    if (on) this.asking.add(plugin);
    else this.asking.delete(plugin);
    this.apply();
  }

  /** A plugin's frame went away: it no longer asks. */
  forget(plugin) {
    this.asking.delete(plugin);
    this.apply();
  }

  lowered() {
    return this.asking.size > 0 && !this.declined;
  }

  apply() {
    this.setVolume(this.lowered() ? DUCKED_VOLUME : 1);
    this.render();
  }

  render() {
    if (this.asking.size === 0) {
      this.line?.remove();
      this.line = null;
      return;
    }
    if (!this.line) {
      this.line = document.createElement("p");
      this.line.className = "notice ducking";
      this.line.setAttribute("role", "status");
      this.text = document.createElement("span");
      this.button = document.createElement("button");
      this.button.type = "button";
      this.button.className = "button quiet";
      this.button.addEventListener("click", () => {
        this.declined = !this.declined;
        this.apply();
      });
      this.line.append(this.text, " ", this.button);
      this.before.before(this.line);
    }
    const who = [...this.asking].join(", ");
    if (this.declined) {
      this.text.textContent = `${who} is playing; call audio at full volume.`;
      this.button.textContent = "Lower call audio";
    } else {
      this.text.textContent = `Call audio lowered while ${who} plays.`;
      this.button.textContent = "Restore call audio";
    }
  }
}
