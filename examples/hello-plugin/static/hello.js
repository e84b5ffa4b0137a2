// The call-page extension of the hello plugin: shows what the plugin relays.
export default function setup(plugin) {
  plugin.onMessage((payload) => {
    const text = new TextDecoder().decode(payload);
    console.info(`hello plugin: ${text}`);
  });
}
