//! Publish credentials over RTMP. RTMP has no standard authentication, so, like most RTMP
//! servers, edgerec reads them from the publish URL's query:
//! `rtmp://host/app/stream?user=U&pass=P&record_interval=60`. The two keys are removed
//! before the record parameters are read (and before anything is logged). Pure.

use crate::config::IngestUser;

/// Credentials a publisher gave, and the query without them.
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    pub user: Option<String>,
    pub pass: Option<String>,
    /// The remaining `key=value` pairs, as sent.
    pub query: String,
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Takes `user` and `pass` out of a raw query string.
pub fn split(query: &str) -> Split {
    let mut out = Split {
        user: None,
        pass: None,
        query: String::new(),
    };
    let mut rest = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match decode(k).as_str() {
            "user" => out.user = Some(decode(v)),
            "pass" => out.pass = Some(decode(v)),
            _ => rest.push(pair),
        }
    }
    out.query = rest.join("&");
    out
}

/// Equal without an early exit, so timing does not tell how much of a password matched.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

/// Checks the credentials against `users`; no users = anyone may publish.
pub fn check(users: &[IngestUser], split: &Split) -> Result<(), &'static str> {
    if users.is_empty() {
        return Ok(());
    }
    let (Some(user), Some(pass)) = (&split.user, &split.pass) else {
        return Err(
            "publish credentials required: add ?user=NAME&pass=PASSWORD to the stream name",
        );
    };
    let mut ok = false;
    for u in users {
        ok |= same(&u.user, user) & same(&u.password, pass);
    }
    if ok {
        Ok(())
    } else {
        Err("wrong user or password")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Vec<IngestUser> {
        vec![IngestUser {
            user: "enc".into(),
            password: "p&ss w".into(),
        }]
    }

    #[test]
    fn credentials_are_taken_out_of_the_query_and_the_rest_is_kept_as_sent() {
        let s = split("record=fmp4%7Cmp4&user=enc&pass=p%26ss+w&record_interval=60");
        assert_eq!(s.user.as_deref(), Some("enc"));
        assert_eq!(s.pass.as_deref(), Some("p&ss w"));
        assert_eq!(s.query, "record=fmp4%7Cmp4&record_interval=60");
        assert_eq!(check(&users(), &s), Ok(()));
    }

    #[test]
    fn missing_or_wrong_credentials_are_refused_when_users_are_configured() {
        assert!(check(&users(), &split("record_interval=60")).is_err());
        assert!(check(&users(), &split("user=enc&pass=nope")).is_err());
        assert!(check(&users(), &split("user=enc&pass=p%26ss+")).is_err());
        assert!(check(&users(), &split("user=other&pass=p%26ss+w")).is_err());
        assert_eq!(check(&[], &split("")), Ok(()));
    }

    #[test]
    fn empty_query_stays_empty() {
        assert_eq!(split("").query, "");
        assert_eq!(split("user=a").query, "");
    }
}
