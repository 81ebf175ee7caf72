//! Shell-style globs for rules' `app` and `stream` patterns.
//!
//! `*` matches any run of characters (also none), `?` exactly one, `[abc]`, `[a-z]` and
//! `[!a-z]` (or `[^a-z]`) one character of (or not of) a set, `{front,back}` any of the
//! comma-separated alternatives (not nested), and `\` takes the next character literally.
//! Everything else matches itself, case-sensitively.
//!
//! Written here instead of using `globset`, which compiles every pattern to a regex: the
//! regex engine was a fifth of a megabyte of the device binary, for patterns matched a few
//! times per stream start.

use std::fmt;

/// A parsed glob. [`Glob::new`] reports a malformed pattern; [`Glob::matches`] is pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    One,
    /// `*`
    Any,
    /// `[...]`: inclusive ranges (a single character is a range of one), negated or not.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `{a,b}`: each alternative is a token sequence without further alternations.
    Alternatives(Vec<Vec<Token>>),
}

/// Why a pattern is not a glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobError(&'static str);

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for GlobError {}

impl Glob {
    /// Parses `pattern`.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        let mut chars = pattern.chars().peekable();
        let mut tokens = Vec::new();
        let mut alternatives: Option<Vec<Vec<Token>>> = None;
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => Token::Any,
                '?' => Token::One,
                '\\' => Token::Literal(chars.next().ok_or(GlobError("dangling '\\' at the end"))?),
                '[' => parse_class(&mut chars)?,
                '{' => {
                    if alternatives.is_some() {
                        return Err(GlobError("nested '{' alternations are not supported"));
                    }
                    alternatives = Some(vec![Vec::new()]);
                    continue;
                }
                ',' if alternatives.is_some() => {
                    if let Some(alts) = alternatives.as_mut() {
                        alts.push(Vec::new());
                    }
                    continue;
                }
                '}' if alternatives.is_some() => {
                    if let Some(alts) = alternatives.take() {
                        tokens.push(Token::Alternatives(alts));
                    }
                    continue;
                }
                '}' => return Err(GlobError("'}' without an opening '{'")),
                c => Token::Literal(c),
            };
            match alternatives.as_mut().and_then(|alts| alts.last_mut()) {
                Some(alt) => alt.push(token),
                None => tokens.push(token),
            }
        }
        if alternatives.is_some() {
            return Err(GlobError("unclosed '{'"));
        }
        Ok(Glob { tokens })
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        match_tokens(&self.tokens, &[], &text)
    }
}

/// Parses a class after its `[`, through its `]`. A `]` right after `[` (or `[!`) is a
/// member, as in shells.
fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Token, GlobError> {
    let negated = matches!(chars.peek(), Some('!' | '^'));
    if negated {
        chars.next();
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = chars.next().ok_or(GlobError("unclosed '['"))?;
        if c == ']' && !first {
            break;
        }
        first = false;
        let lo = if c == '\\' {
            chars.next().ok_or(GlobError("unclosed '['"))?
        } else {
            c
        };
        let mut lookahead = chars.clone();
        if lookahead.next() == Some('-') && !matches!(lookahead.peek(), Some(']') | None) {
            chars.next();
            let hi = chars.next().ok_or(GlobError("unclosed '['"))?;
            if hi < lo {
                return Err(GlobError("a '[x-y]' range runs backwards"));
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
    Ok(Token::Class { negated, ranges })
}

/// Matches `tokens` followed by `rest` against the whole of `text` (backtracking; the
/// patterns and names are short).
fn match_tokens(tokens: &[Token], rest: &[Token], text: &[char]) -> bool {
    let Some((token, tail)) = tokens.split_first() else {
        return if rest.is_empty() {
            text.is_empty()
        } else {
            match_tokens(rest, &[], text)
        };
    };
    match token {
        Token::Literal(c) => text.first() == Some(c) && match_tokens(tail, rest, &text[1..]),
        Token::One => !text.is_empty() && match_tokens(tail, rest, &text[1..]),
        Token::Class { negated, ranges } => {
            text.first()
                .is_some_and(|c| ranges.iter().any(|(lo, hi)| (lo..=hi).contains(&c)) != *negated)
                && match_tokens(tail, rest, &text[1..])
        }
        Token::Any => (0..=text.len()).any(|skip| match_tokens(tail, rest, &text[skip..])),
        Token::Alternatives(alts) => {
            // An alternation never holds another one, so its tail is plain tokens: join the
            // alternative with what follows it and go on.
            alts.iter().any(|alt| {
                let joined: Vec<Token> = alt.iter().chain(tail).cloned().collect();
                match_tokens(&joined, rest, text)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).unwrap().matches(text)
    }

    #[test]
    fn star_matches_any_run_including_none() {
        assert!(m("*", ""));
        assert!(m("*", "cam1"));
        assert!(m("cam*", "cam"));
        assert!(m("cam*", "cam12"));
        assert!(m("*-hd", "front-hd"));
        assert!(!m("*-hd", "front-sd"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        assert!(m("cam?", "cam1"));
        assert!(!m("cam?", "cam"));
        assert!(!m("cam?", "cam12"));
        assert!(m("??", "ét"));
    }

    #[test]
    fn literals_match_the_whole_name_case_sensitively() {
        assert!(m("cam1", "cam1"));
        assert!(!m("cam1", "cam10"));
        assert!(!m("cam1", "xcam1"));
        assert!(!m("Cam1", "cam1"));
    }

    #[test]
    fn classes_match_one_character_of_a_set_or_range() {
        assert!(m("cam[12]", "cam2"));
        assert!(!m("cam[12]", "cam3"));
        assert!(m("cam[0-9]", "cam7"));
        assert!(!m("cam[!0-9]", "cam7"));
        assert!(m("cam[^0-9]", "camx"));
        assert!(m("[]]", "]"));
        assert!(m("[a-]", "-"));
    }

    #[test]
    fn alternatives_match_any_of_their_branches() {
        assert!(m("{front,back}", "front"));
        assert!(m("{front,back}", "back"));
        assert!(!m("{front,back}", "side"));
        assert!(m("door-{a,b*}-hd", "door-bxx-hd"));
        assert!(m("x{,y}", "x"));
        assert!(m("{a,b}{c,d}", "bd"));
    }

    #[test]
    fn a_backslash_escapes_the_next_character() {
        assert!(m(r"cam\*", "cam*"));
        assert!(!m(r"cam\*", "cam1"));
    }

    #[test]
    fn malformed_patterns_are_refused_with_a_reason() {
        for (p, why) in [
            ("cam[1", "unclosed '['"),
            ("{a,b", "unclosed '{'"),
            ("a}", "'}' without an opening '{'"),
            ("{a,{b,c}}", "nested"),
            ("[z-a]", "backwards"),
            ("cam\\", "dangling"),
        ] {
            let e = Glob::new(p).unwrap_err().to_string();
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
