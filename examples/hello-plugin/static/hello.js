// The call-page extension of the hello plugin: a "Wave" button and a shared note.
// A wave goes to the plugin (its on-call-message hook), which relays it to everyone
// on the call; every page lists the waves it receives.
export default function setup(plugin) {
  const title = document.createElement("h3");
  title.textContent = "Hello";
  const wave = document.createElement("button");
  wave.type = "button";
  wave.className = "button quiet";
  wave.textContent = "Wave";
  const received = document.createElement("ul");
  received.className = "waves";
  plugin.element.append(title, wave, received);

  wave.addEventListener("click", () => {
    const mine = plugin.participants().find((p) => p.participant === plugin.me());
    plugin.send(`${mine ? mine.name : "Someone"} waves`);
  });

  plugin.onMessage((payload) => {
    const item = document.createElement("li");
    item.textContent = new TextDecoder().decode(payload);
    received.append(item);
  });

  // A server older than 1.3 has no activities.
  if (plugin.activity) sharedNote(plugin);
}

// A shared note: the plugin's shared activity (sdk/README.md, "Shared
// activities"). Anyone on the call starts it or joins it; what one types reaches
// everyone in it, and someone who joins later gets the note as it is. The page
// seals it with the call's keys: the server and this plugin's WebAssembly side
// never read it.
export function sharedNote(plugin) {
  const activity = plugin.activity;
  const box = document.createElement("div");
  box.className = "shared-note";
  const status = document.createElement("p");
  status.className = "note-status";
  const toggle = document.createElement("button");
  toggle.type = "button";
  toggle.className = "button quiet note-toggle";
  const note = document.createElement("textarea");
  note.className = "note";
  note.rows = 3;
  note.placeholder = "A note everyone in it sees";
  note.hidden = true;
  box.append(status, toggle, note);
  plugin.element.append(box);

  const render = () => {
    const { active, joined, members } = activity.presence();
    const host = members.find((m) => m.role === "host");
    status.textContent = active
      ? `${host?.name || "Someone"} started a shared note · ${members.length} in it`
      : "";
    toggle.textContent = joined ? "Leave the note" : active ? "Join the shared note" : "Start a shared note";
    note.hidden = !joined || !activity.state.ready();
  };
  toggle.addEventListener("click", () => {
    (activity.presence().joined ? activity.leave() : activity.join()).catch((e) => plugin.notice(e.message));
  });
  let typing = null;
  note.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => activity.state.set("note", note.value).catch((e) => plugin.notice(e.message)), 300);
  });
  activity.onPresence(render);
  activity.state.onSync(({ state }) => {
    note.value = state.note ?? "";
    render();
  });
  activity.state.onChange(({ key, value, from }) => {
    // My own change comes back too, in its place in the order: the box has it already.
    if (key === "note" && from !== plugin.me()) note.value = value ?? "";
  });
  render();
}
