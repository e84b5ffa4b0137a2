//! `templates`: render a tera template the plugin ships (operators may override it),
//! or one of the server's shared ones (`email/…`, overridable under `templates.dir`).

use std::sync::Arc;

use super::Grants;
use crate::plugins::bindings::confab::plugin::templates::Host;
use crate::plugins::bindings::confab::plugin::types::Error;
use crate::plugins::deps::PluginDeps;
use crate::plugins::manifest::Capability;
use crate::plugins::runtime::HostState;

use confab_plugin_contract::limits::TEMPLATES_MAX_CONTEXT_BYTES as MAX_CONTEXT_BYTES;

/// The `templates` capability: the plugin's own templates, then the server's
/// shared ones.
pub(crate) struct TemplatesHost {
    grants: Arc<Grants>,
    server: Arc<tera::Tera>,
}

impl TemplatesHost {
    pub(super) fn new(grants: &Arc<Grants>, deps: &PluginDeps) -> Self {
        Self {
            grants: grants.clone(),
            server: deps.templates.clone(),
        }
    }

    fn render(&self, name: &str, context: &str) -> Result<String, Error> {
        let own = self
            .grants
            .templates
            .as_ref()
            .filter(|tera| tera.get_template_names().any(|n| n == name));
        let server = &self.server;
        let tera = match own {
            Some(tera) => tera,
            None if crate::templates::shared_with_plugins(name)
                && server.get_template_names().any(|n| n == name) =>
            {
                server.as_ref()
            }
            None => return Err(Error::NotFound(format!("no template called {name:?}"))),
        };
        if context.len() > MAX_CONTEXT_BYTES {
            return Err(Error::LimitReached(format!(
                "the context is larger than {MAX_CONTEXT_BYTES} bytes"
            )));
        }
        let value: serde_json::Value = serde_json::from_str(context)
            .map_err(|e| Error::Invalid(format!("the context is not JSON: {e}")))?;
        let context = tera::Context::from_value(value)
            .map_err(|_| Error::Invalid("the context must be a JSON object".into()))?;
        tera.render(name, &context).map_err(|e| {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            Error::Invalid(message)
        })
    }
}

impl Host for HostState {
    async fn render(
        &mut self,
        name: String,
        context: String,
    ) -> wasmtime::Result<Result<String, Error>> {
        Ok(self
            .granted(Capability::Templates, |c| c.templates.as_mut())
            .and_then(|templates| templates.render(&name, &context)))
    }
}
