//! `http-client`: outbound HTTP(S) to the hosts the plugin's manifest lists (and the
//! operator did not narrow further). Redirects are not followed: the plugin sees
//! them and may follow them itself, to an allowed host only.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::Grants;
use crate::plugins::bindings::confab::plugin::http_client::{Host, Request, Response};
use crate::plugins::bindings::confab::plugin::types::Error;
use crate::plugins::manifest::{Capability, host_allowed};
use crate::plugins::runtime::HostState;

pub use confab_plugin_contract::limits::{
    HTTP_MAX_BODY_BYTES as MAX_BODY_BYTES, HTTP_MAX_TIMEOUT as MAX_TIMEOUT,
};

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Confab/", env!("CARGO_PKG_VERSION"), " plugin"))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default()
    })
}

/// The URL, if the plugin may call it.
pub fn check_url(allowed: &[String], url: &str) -> Result<reqwest::Url, Error> {
    let url = reqwest::Url::parse(url)
        .map_err(|e| Error::Invalid(format!("{url:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Invalid(format!(
            "only http and https URLs are allowed, not {}:",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Invalid(
            "put credentials in an Authorization header, not in the URL".into(),
        ));
    }
    let host = url.host_str().unwrap_or_default();
    if !host_allowed(allowed, host) {
        return Err(Error::AccessDenied(format!(
            "{host} is not among the hosts this plugin may call"
        )));
    }
    Ok(url)
}

/// The `http-client` capability: requests to the hosts the manifest lists.
pub(crate) struct HttpClientHost {
    grants: Arc<Grants>,
}

impl HttpClientHost {
    pub(super) fn new(grants: &Arc<Grants>) -> Self {
        Self {
            grants: grants.clone(),
        }
    }

    async fn send(&self, request: Request) -> Result<Response, Error> {
        let url = check_url(&self.grants.http_hosts, &request.url)?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| Error::Invalid(format!("{:?} is not an HTTP method", request.method)))?;
        if request.body.len() > MAX_BODY_BYTES {
            return Err(Error::LimitReached(format!(
                "request bodies are at most {MAX_BODY_BYTES} bytes"
            )));
        }
        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .unwrap_or(MAX_TIMEOUT)
            .min(MAX_TIMEOUT);
        let mut builder = client().request(method, url).timeout(timeout);
        for (name, value) in &request.headers {
            if !confab_plugin_contract::http::header_allowed(name, value) {
                return Err(Error::Invalid(format!("header {name:?} is not allowed")));
            }
            builder = builder.header(name.as_str(), value.as_str());
        }
        let mut response = builder
            .body(request.body)
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("the request failed: {e}")))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Error::Unavailable(format!("reading the response failed: {e}")))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Error::LimitReached(format!(
                    "the response is larger than {MAX_BODY_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

impl Host for HostState {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, Error>> {
        Ok(async {
            let http = self.granted(Capability::HttpClient, |c| c.http_client.as_mut())?;
            http.send(request).await
        }
        .await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_hosts_and_web_schemes_pass() {
        let allowed = vec!["caldav.example.org".to_string()];
        assert!(check_url(&allowed, "https://caldav.example.org/dav/").is_ok());
        for (url, want_denied) in [
            ("https://other.example.org/", true),
            ("https://caldav.example.org.evil.test/", true),
            ("file:///etc/passwd", false),
            ("https://user:pw@caldav.example.org/", false),
            ("not a url", false),
        ] {
            match check_url(&allowed, url) {
                Err(Error::AccessDenied(_)) => assert!(want_denied, "{url}"),
                Err(Error::Invalid(_)) => assert!(!want_denied, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
