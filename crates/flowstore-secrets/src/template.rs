//! `${NAME}` / `$NAME` templates in JSON-like request arguments.

use flowstore_core::secret::{ExposeSecret, SecretSource, SecretString};
use serde_json::Value;

use crate::error::Error;
use crate::json::SecretJson;
use crate::redact::Redactor;

/// A rendered value: secret-typed (see [`SecretJson`]).
pub type RenderedValue = SecretJson;

/// Replaces `${NAME}` and `$NAME` (`$$` is a literal `$`) in every string value of `value`,
/// nested too; keys and non-strings are untouched and `value` is not changed. Each name is looked
/// up in the environment first, then in `sources`.
///
/// Errors with [`Error::UnknownTemplateName`] for a name found in neither.
///
/// ```
/// use flowstore_secrets::{render, MapSource, ExposeSecret};
/// let args = serde_json::json!({"headers": {"Authorization": "Bearer ${FLOWSTORE_DOC_TOKEN}"}});
/// let rendered = render(&args, &MapSource::new().with("FLOWSTORE_DOC_TOKEN", "t0k")).unwrap();
/// assert_eq!(rendered.expose_secret()["headers"]["Authorization"], "Bearer t0k");
/// assert_eq!(args["headers"]["Authorization"], "Bearer ${FLOWSTORE_DOC_TOKEN}");
/// ```
pub fn render(value: &Value, sources: &dyn SecretSource) -> Result<RenderedValue, Error> {
    render_with_redactor(value, sources).map(|(v, _)| v)
}

/// Like [`render`], also returning a [`Redactor`] that knows every value substituted, so a
/// caller can scrub them from anything it reports (an HTTP error body that echoes a header).
pub fn render_with_redactor(
    value: &Value,
    sources: &dyn SecretSource,
) -> Result<(RenderedValue, Redactor), Error> {
    let mut redactor = Redactor::new();
    let rendered = render_value(value, sources, &mut redactor)?;
    Ok((SecretJson::new(rendered), redactor))
}

fn render_value(
    value: &Value,
    sources: &dyn SecretSource,
    used: &mut Redactor,
) -> Result<Value, Error> {
    Ok(match value {
        Value::String(s) => Value::String(render_str(s, sources, used)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_value(v, sources, used))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, sources, used)?)))
                .collect::<Result<_, Error>>()?,
        ),
        other => other.clone(),
    })
}

fn lookup(
    name: &str,
    sources: &dyn SecretSource,
    used: &mut Redactor,
) -> Result<SecretString, Error> {
    let value = match std::env::var(name) {
        Ok(v) => SecretString::from(v),
        Err(_) => sources
            .get(name)?
            .ok_or_else(|| Error::UnknownTemplateName {
                name: name.to_string(),
            })?,
    };
    used.add(value.clone());
    Ok(value)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Renders one string (single pass: a rendered value is never rendered again).
fn render_str(s: &str, sources: &dyn SecretSource, used: &mut Redactor) -> Result<String, Error> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            match body.find('}') {
                Some(end) if !body[..end].is_empty() && body[..end].chars().all(is_name_char) => {
                    out.push_str(lookup(&body[..end], sources, used)?.expose_secret());
                    rest = &body[end + 1..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            let len = after
                .find(|c: char| !is_name_char(c))
                .unwrap_or(after.len());
            if len == 0 {
                out.push('$');
                rest = after;
            } else {
                out.push_str(lookup(&after[..len], sources, used)?.expose_secret());
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}
