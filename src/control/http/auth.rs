//! Who may call what: the `Authorization: Bearer` header against the configured tokens.
//! Pure.
//!
//! - No tokens configured (allowed only on loopback, see `crate::config::http`): everything
//!   is allowed.
//! - Otherwise a request without a known token is [`Decision::Unauthorized`] (401 with
//!   `WWW-Authenticate: Bearer`), and a `view` token on a `control` endpoint is
//!   [`Decision::Forbidden`] (403).
//!
//! Tokens are compared in constant time, and every configured token is compared, so the
//! answer's timing says nothing about how much of a guess was right or which token matched.

use crate::config::http::{Scope, Token};

/// The outcome for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// 401: no token, a malformed header, or a token not configured.
    Unauthorized,
    /// 403: a known token whose scope is too small.
    Forbidden,
}

/// Decide for a request carrying `authorization` (the header's value, if any) that needs
/// `needed`.
pub fn decide(tokens: &[Token], authorization: Option<&[u8]>, needed: Scope) -> Decision {
    if tokens.is_empty() {
        return Decision::Allow;
    }
    let Some(given) = authorization.and_then(bearer) else {
        return Decision::Unauthorized;
    };
    let mut found: Option<Scope> = None;
    for t in tokens {
        if constant_time_eq(t.token.as_bytes(), given) {
            found = Some(t.scope);
        }
    }
    match found {
        None => Decision::Unauthorized,
        Some(s) if s >= needed => Decision::Allow,
        Some(_) => Decision::Forbidden,
    }
}

/// The credentials of a `Bearer` header (the scheme is case-insensitive).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Equal bytes, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<Token> {
        vec![
            Token {
                token: "view-token-0123456789".into(),
                scope: Scope::View,
            },
            Token {
                token: "control-token-0123456789".into(),
                scope: Scope::Control,
            },
        ]
    }

    #[test]
    fn without_configured_tokens_everything_is_allowed() {
        assert_eq!(decide(&[], None, Scope::Control), Decision::Allow);
    }

    #[test]
    fn a_missing_or_unknown_token_is_unauthorized() {
        let t = tokens();
        assert_eq!(decide(&t, None, Scope::View), Decision::Unauthorized);
        assert_eq!(
            decide(&t, Some(b"Bearer nope"), Scope::View),
            Decision::Unauthorized
        );
        assert_eq!(
            decide(&t, Some(b"Basic dmlldy10b2tlbi0wMTIzNDU2Nzg5"), Scope::View),
            Decision::Unauthorized
        );
        assert_eq!(
            decide(&t, Some(b"Bearer view-token-012345678"), Scope::View),
            Decision::Unauthorized
        );
    }

    #[test]
    fn a_view_token_is_forbidden_on_control_endpoints() {
        let t = tokens();
        let v = Some(&b"Bearer view-token-0123456789"[..]);
        assert_eq!(decide(&t, v, Scope::View), Decision::Allow);
        assert_eq!(decide(&t, v, Scope::Control), Decision::Forbidden);
    }

    #[test]
    fn a_control_token_may_view_and_the_scheme_is_case_insensitive() {
        let t = tokens();
        let c = Some(&b"bearer control-token-0123456789"[..]);
        assert_eq!(decide(&t, c, Scope::Control), Decision::Allow);
        assert_eq!(decide(&t, c, Scope::View), Decision::Allow);
    }
}
