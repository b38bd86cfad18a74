//! The HTTP methods Webhook storage accepts, as in the reference system.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// GET, PATCH, POST or PUT; anything else is refused when the storage is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HttpMethod {
    /// `GET`
    Get,
    /// `PATCH`
    Patch,
    /// `POST`
    Post,
    /// `PUT`
    Put,
}

impl HttpMethod {
    /// Parses a method name (case-insensitive).
    ///
    /// Errors with [`Error::Config`] naming the method and the accepted ones.
    pub fn parse(method: &str) -> Result<Self, Error> {
        match method.to_ascii_uppercase().as_str() {
            "GET" => Ok(HttpMethod::Get),
            "PATCH" => Ok(HttpMethod::Patch),
            "POST" => Ok(HttpMethod::Post),
            "PUT" => Ok(HttpMethod::Put),
            _ => Err(Error::Config(format!(
                "HTTP method \"{method}\" is not supported; use one of GET, PATCH, POST, PUT"
            ))),
        }
    }

    /// The method's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
        }
    }

    pub(crate) fn to_reqwest(self) -> reqwest::Method {
        match self {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
        }
    }
}

impl std::str::FromStr for HttpMethod {
    type Err = Error;
    /// As [`HttpMethod::parse`].
    fn from_str(s: &str) -> Result<Self, Error> {
        HttpMethod::parse(s)
    }
}

impl std::fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for HttpMethod {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        HttpMethod::parse(&s)
    }
}

impl From<HttpMethod> for String {
    fn from(m: HttpMethod) -> String {
        m.as_str().to_string()
    }
}
