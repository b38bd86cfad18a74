//! [`WebhookConfig`]: the backend fields of a `Webhook` reference and the options that set them.

use flowstore_core::raw::config::BackendConfig;
use flowstore_core::{Error as CoreError, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::method::HttpMethod;
use crate::storage::TYPE_NAME;

/// The backend fields of a `Webhook` reference (Prefect 1's names): the whole configuration of a
/// [`Webhook`](crate::Webhook) storage. The kwargs keep their `${NAME}` templates; rendered values
/// and typed credentials are never stored.
///
/// Option keys ([`WebhookBuilder::with_config`](crate::WebhookBuilder::with_config), a URL's
/// query):
///
/// | key | sets |
/// |---|---|
/// | `build_request_http_method`, `get_flow_request_http_method` | the methods (GET, PATCH, POST, PUT) |
/// | `stored_as_script`, `flow_script_path` | script mode and the script sent |
/// | `timeout` | both requests' `timeout` (seconds); `build_request_timeout` / `get_flow_request_timeout` one |
/// | `header.<name>` | header `<name>` of both requests (a `${NAME}` template is rendered at call time) |
/// | `param.<name>` | query parameter `<name>` of both requests |
/// | `bearer_token_secret` | `Authorization: Bearer ${<value>}` on both requests, and declares the secret |
/// | `basic_auth` | `<user>:<secret name>`: `auth` = `[user, "${<secret name>}"]` on both, and declares the secret |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// Arguments of the build request (`url`, `headers`, `params`, `timeout`, `auth`, …).
    pub build_request_kwargs: Value,
    /// Method of the build request.
    pub build_request_http_method: HttpMethod,
    /// Arguments of the get request.
    pub get_flow_request_kwargs: Value,
    /// Method of the get request.
    pub get_flow_request_http_method: HttpMethod,
    /// Script mode.
    #[serde(default)]
    pub stored_as_script: bool,
    /// The script sent at build in script mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_script_path: Option<String>,
    /// URL mode (flowstore extension): each added flow is sent to `<key_base_url>/<flow key>`, a
    /// fresh key per registration, so registrations never share a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_base_url: Option<String>,
}

impl BackendConfig for WebhookConfig {
    const TYPE_NAME: &'static str = TYPE_NAME;
    /// `header.<name>` and `param.<name>` stand for any name; `timeout`, `bearer_token_secret`
    /// and `basic_auth` set both requests (see [`WebhookConfig`]).
    const OPTIONS: &'static [(&'static str, &'static str)] = &[
        ("build_request_http_method", "build_request_http_method"),
        (
            "get_flow_request_http_method",
            "get_flow_request_http_method",
        ),
        ("stored_as_script", "stored_as_script"),
        ("flow_script_path", "flow_script_path"),
        ("timeout", "*_request_kwargs.timeout"),
        ("build_request_timeout", "build_request_kwargs.timeout"),
        (
            "get_flow_request_timeout",
            "get_flow_request_kwargs.timeout",
        ),
        ("header.<name>", "*_request_kwargs.headers.<name>"),
        ("param.<name>", "*_request_kwargs.params.<name>"),
        (
            "bearer_token_secret",
            "*_request_kwargs.headers.Authorization",
        ),
        ("basic_auth", "*_request_kwargs.auth"),
    ];

    /// Sets one option (see the table on [`WebhookConfig`]).
    ///
    /// Errors with [`CoreError::Config`] for an unknown key (listing the known ones), a method
    /// other than GET/PATCH/POST/PUT, a timeout that is not a positive number of seconds, or a
    /// secret name that cannot be a `${NAME}` template.
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let both = [Request::Build, Request::Get];
        match key {
            "timeout" => self.set_timeout(key, value, &both),
            "build_request_timeout" => self.set_timeout(key, value, &[Request::Build]),
            "get_flow_request_timeout" => self.set_timeout(key, value, &[Request::Get]),
            "bearer_token_secret" => {
                check_secret_name(key, value)?;
                self.set_header("Authorization", &format!("Bearer ${{{value}}}"));
                Ok(())
            }
            "basic_auth" => {
                let Some((user, secret)) = value.split_once(':') else {
                    return Err(CoreError::config(format!(
                        "Webhook option basic_auth={value:?} must be USER:SECRET_NAME (the password \
                         is the secret's value, never written in the option)"
                    )));
                };
                check_secret_name(key, secret)?;
                self.set_auth(user, secret);
                Ok(())
            }
            _ => {
                if let Some(name) = key.strip_prefix("header.").filter(|n| !n.is_empty()) {
                    self.set_header(name, value);
                    return Ok(());
                }
                if let Some(name) = key.strip_prefix("param.").filter(|n| !n.is_empty()) {
                    self.set_in_both("params", name, Value::String(value.to_string()));
                    return Ok(());
                }
                let mut plain = Plain(self.clone());
                plain.set(key, value)?;
                *self = plain.0;
                Ok(())
            }
        }
    }
}

/// [`WebhookConfig`] with the generic [`BackendConfig::set`], for the options that are plain
/// fields (methods, script mode).
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
struct Plain(WebhookConfig);

impl BackendConfig for Plain {
    const TYPE_NAME: &'static str = TYPE_NAME;
    const OPTIONS: &'static [(&'static str, &'static str)] = WebhookConfig::OPTIONS;
}

/// Which request an option applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    Build,
    Get,
}

/// Errors unless `name` can be written as a `${NAME}` template (letters, digits, `_`).
fn check_secret_name(key: &str, name: &str) -> Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(CoreError::config(format!(
            "Webhook option {key}: secret name {name:?} must be letters, digits and _ (it is \
             written as the template ${{{name}}} and resolved from the environment or the secret \
             sources at call time)"
        )));
    }
    Ok(())
}

impl WebhookConfig {
    /// A configuration for the two requests (serialized mode).
    pub fn new(
        build_request_kwargs: Value,
        build_request_http_method: HttpMethod,
        get_flow_request_kwargs: Value,
        get_flow_request_http_method: HttpMethod,
    ) -> Self {
        WebhookConfig {
            build_request_kwargs,
            build_request_http_method,
            get_flow_request_kwargs,
            get_flow_request_http_method,
            stored_as_script: false,
            flow_script_path: None,
            key_base_url: None,
        }
    }

    pub(crate) fn kwargs_mut(&mut self, request: Request) -> &mut Value {
        match request {
            Request::Build => &mut self.build_request_kwargs,
            Request::Get => &mut self.get_flow_request_kwargs,
        }
    }

    /// Sets `kwargs[field][name] = value` in both requests (a kwargs that is not an object is
    /// left alone: `build` reports it).
    pub(crate) fn set_in_both(&mut self, field: &str, name: &str, value: Value) {
        for request in [Request::Build, Request::Get] {
            if let Some(kwargs) = self.kwargs_mut(request).as_object_mut() {
                let slot = kwargs.entry(field).or_insert_with(|| json!({}));
                if !slot.is_object() {
                    *slot = json!({});
                }
                slot.as_object_mut()
                    .expect("made an object above")
                    .insert(name.to_string(), value.clone());
            }
        }
    }

    /// Sets header `name` in both requests, replacing one of the same name in any case.
    pub(crate) fn set_header(&mut self, name: &str, value: &str) {
        for request in [Request::Build, Request::Get] {
            if let Some(headers) = self
                .kwargs_mut(request)
                .get_mut("headers")
                .and_then(Value::as_object_mut)
            {
                headers.retain(|k, _| !k.eq_ignore_ascii_case(name));
            }
        }
        self.set_in_both("headers", name, Value::String(value.to_string()));
    }

    pub(crate) fn set_auth(&mut self, user: &str, secret: &str) {
        for request in [Request::Build, Request::Get] {
            if let Some(kwargs) = self.kwargs_mut(request).as_object_mut() {
                kwargs.insert("auth".into(), json!([user, format!("${{{secret}}}")]));
            }
        }
    }

    fn set_timeout(&mut self, key: &str, value: &str, requests: &[Request]) -> Result<()> {
        let seconds: Value = match (value.parse::<u64>(), value.parse::<f64>()) {
            (Ok(n), _) if n > 0 => json!(n),
            (_, Ok(f)) if f > 0.0 && f.is_finite() => json!(f),
            _ => {
                return Err(CoreError::config(format!(
                    "Webhook option {key}={value:?} must be a positive number of seconds"
                )))
            }
        };
        for &request in requests {
            if let Some(kwargs) = self.kwargs_mut(request).as_object_mut() {
                kwargs.insert("timeout".into(), seconds.clone());
            }
        }
        Ok(())
    }

    pub(crate) fn has_auth(&self) -> bool {
        [&self.build_request_kwargs, &self.get_flow_request_kwargs]
            .iter()
            .any(|k| {
                k.get("auth").is_some()
                    || k.get("headers")
                        .and_then(Value::as_object)
                        .is_some_and(|h| h.keys().any(|n| n.eq_ignore_ascii_case("authorization")))
            })
    }
}
