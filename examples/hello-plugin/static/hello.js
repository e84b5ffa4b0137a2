// The call-page extension of the hello plugin: a "Wave" button. A wave goes to the
// plugin (its on-call-message hook), which relays it to everyone on the call; every
// page lists the waves it receives.
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
}
