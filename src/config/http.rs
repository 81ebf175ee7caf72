//! `[http]`: the local HTTP API (see `crate::control::http` and `docs/http.md`).
//!
//! Off when the section is absent. With it, the API listens on `listen` (default
//! `127.0.0.1:8080`). The exposure rules are checked here, so a config that would put the API
//! on the network unprotected never starts:
//!
//! - a non-loopback `listen` needs `tokens` (anyone on the network could call it otherwise);
//! - edgerec has no TLS server, so tokens on a non-loopback address travel in plain text:
//!   that also needs `allow_insecure = true`, a statement that the network is trusted or a
//!   TLS proxy sits in front.
//!
//! On loopback without tokens every endpoint is open (to local processes only).

use std::net::SocketAddr;

use serde::Deserialize;

use super::ConfigError;

/// Default `http.listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Shortest token accepted (guessing must be out of reach).
pub const MIN_TOKEN_LEN: usize = 16;

/// `[http]` as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    #[serde(default)]
    pub listen: Option<String>,
    #[serde(default)]
    pub tokens: Vec<RawToken>,
    #[serde(default)]
    pub allow_insecure: bool,
}

/// One `[[http.tokens]]` entry as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawToken {
    pub token: String,
    pub scope: String,
}

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Read-only endpoints: status, segments, events, metrics (and playback, the web page).
    View,
    /// Everything `view` may, and starting or stopping recordings.
    Control,
}

/// One bearer token and its scope.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The secret a client sends as `Authorization: Bearer <token>`. Never logged.
    pub token: String,
    pub scope: Scope,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("token", &"***")
            .field("scope", &self.scope)
            .finish()
    }
}

/// `[http]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where the API listens (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Bearer tokens; empty (allowed on loopback only) = no authentication.
    pub tokens: Vec<Token>,
    /// Serve a non-loopback address over plain HTTP (edgerec has no TLS server).
    pub allow_insecure: bool,
}

fn bad<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::invalid(field, message))
}

pub(crate) fn validate(raw: &RawHttp) -> Result<HttpConfig, ConfigError> {
    let text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let Ok(listen) = text.parse::<SocketAddr>() else {
        return bad(
            "http.listen",
            format!("{text:?} is not an address:port such as \"127.0.0.1:8080\""),
        );
    };
    let mut tokens = Vec::new();
    for (i, t) in raw.tokens.iter().enumerate() {
        let scope = match t.scope.as_str() {
            "view" => Scope::View,
            "control" => Scope::Control,
            s => {
                return bad(
                    format!("http.tokens[{i}].scope"),
                    format!("{s:?} is not a scope: use \"view\" or \"control\""),
                )
            }
        };
        if t.token.len() < MIN_TOKEN_LEN || !t.token.bytes().all(|b| b.is_ascii_graphic()) {
            return bad(
                format!("http.tokens[{i}].token"),
                format!(
                    "must be at least {MIN_TOKEN_LEN} printable ASCII characters without spaces"
                ),
            );
        }
        if tokens.iter().any(|o: &Token| o.token == t.token) {
            return bad(
                format!("http.tokens[{i}].token"),
                "the same token is listed twice",
            );
        }
        tokens.push(Token {
            token: t.token.clone(),
            scope,
        });
    }
    if !listen.ip().is_loopback() {
        if tokens.is_empty() {
            return bad(
                "http.tokens",
                format!("required when http.listen ({listen}) is not a loopback address: without tokens anyone on the network could control the recorder"),
            );
        }
        if !raw.allow_insecure {
            return bad(
                "http.allow_insecure",
                format!("http.listen ({listen}) is not a loopback address and edgerec has no TLS server, so tokens would cross the network in plain text; set allow_insecure = true if the network is trusted or a TLS proxy sits in front, or listen on 127.0.0.1"),
            );
        }
    }
    Ok(HttpConfig {
        listen,
        tokens,
        allow_insecure: raw.allow_insecure,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(http: &str) -> Result<Config, String> {
        let t = format!(
            "device_id = \"d\"\n[storage]\nroot = \"/tmp/x\"\nmax_bytes = \"1GiB\"\n[http]\n{http}"
        );
        Config::from_toml_str(&t).map_err(|e| e.to_string())
    }

    const T: &str = "0123456789abcdefXYZ";

    #[test]
    fn an_empty_section_listens_on_loopback_8080_without_tokens() {
        let c = parse("").unwrap().http.unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.tokens.is_empty());
    }

    #[test]
    fn no_section_means_no_http() {
        let t = "device_id = \"d\"\n[storage]\nroot = \"/tmp/x\"\nmax_bytes = \"1GiB\"\n";
        assert!(Config::from_toml_str(t).unwrap().http.is_none());
    }

    #[test]
    fn a_network_address_without_tokens_is_refused_naming_tokens() {
        let e = parse("listen = \"0.0.0.0:8080\"\n").unwrap_err();
        assert!(e.starts_with("http.tokens: required"), "{e}");
    }

    #[test]
    fn a_network_address_with_tokens_needs_allow_insecure() {
        let toks = format!("[[http.tokens]]\ntoken = \"{T}\"\nscope = \"view\"\n");
        let e = parse(&format!("listen = \"0.0.0.0:8080\"\n{toks}")).unwrap_err();
        assert!(e.starts_with("http.allow_insecure:"), "{e}");
        assert!(e.contains("no TLS server"), "{e}");
        let ok = parse(&format!(
            "listen = \"0.0.0.0:8080\"\nallow_insecure = true\n{toks}"
        ));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn bad_token_fields_are_named() {
        let e = parse(&format!(
            "[[http.tokens]]\ntoken = \"{T}\"\nscope = \"admin\"\n"
        ))
        .unwrap_err();
        assert!(e.starts_with("http.tokens[0].scope:"), "{e}");
        let e = parse("[[http.tokens]]\ntoken = \"short\"\nscope = \"view\"\n").unwrap_err();
        assert!(e.starts_with("http.tokens[0].token:"), "{e}");
        let e = parse("listen = \"localhost\"\n").unwrap_err();
        assert!(e.starts_with("http.listen:"), "{e}");
    }

    #[test]
    fn tokens_are_hidden_from_debug_output() {
        let c = parse(&format!(
            "[[http.tokens]]\ntoken = \"{T}\"\nscope = \"control\"\n"
        ))
        .unwrap();
        assert!(!format!("{c:?}").contains(T));
    }
}
