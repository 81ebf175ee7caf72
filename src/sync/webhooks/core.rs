//! The delivery decisions of one endpoint, free of I/O: what an answer (or its absence)
//! means, how long to wait before the next attempt, and when the endpoint is disabled. The
//! task around it (`task.rs`) only sends requests and sleeps on the injected clock.

use std::time::Duration;

use crate::util::backoff::Backoff;

/// The longest a `Retry-After` is honoured: a header asking for more (or a clock far off)
/// still gets a retry within a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What one attempt got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP status, and the `Retry-After` header if any.
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// No answer: connection refused or reset, DNS, TLS, timeout.
    Failed(String),
}

/// What to do after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Delivered (2xx): move the cursor past the event.
    Delivered,
    /// Try the same event again after `after`; `error` is the endpoint's last error.
    Retry { after: Duration, error: String },
    /// 410 Gone: the endpoint does not want events any more. Disable it durably and raise
    /// `callback.alarm`; a change of the endpoint's config enables it again.
    Disable { error: String },
}

/// One endpoint's retry state: a capped exponential backoff with jitter, reset by a
/// delivery. There is no attempt limit: the event log's capacity is the only bound.
#[derive(Debug)]
pub struct Delivery {
    backoff: Backoff,
}

impl Delivery {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Delivery {
        Delivery {
            backoff: Backoff::new(initial, max, seed),
        }
    }

    /// Consecutive failed attempts.
    pub fn failures(&self) -> u32 {
        self.backoff.attempts()
    }

    /// The decision after `answer`, at wall time `now_ms` (for an HTTP-date `Retry-After`).
    pub fn after(&mut self, answer: &Answer, now_ms: i64) -> Next {
        match answer {
            Answer::Status { code, .. } if (200..300).contains(code) => {
                self.backoff.reset();
                Next::Delivered
            }
            Answer::Status { code: 410, .. } => Next::Disable {
                error: "HTTP 410 Gone: the endpoint asked for no more events".into(),
            },
            Answer::Status { code, retry_after } => {
                let backoff = self.backoff.next_delay();
                let asked = retry_after
                    .as_deref()
                    .and_then(|h| retry_after_delay(h, now_ms));
                Next::Retry {
                    after: asked.unwrap_or(backoff),
                    error: format!("HTTP {code}"),
                }
            }
            Answer::Failed(e) => Next::Retry {
                after: self.backoff.next_delay(),
                error: e.clone(),
            },
        }
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP-date (RFC 9110),
/// at most [`MAX_RETRY_AFTER`]. `None` when it cannot be read.
pub fn retry_after_delay(header: &str, now_ms: i64) -> Option<Duration> {
    let h = header.trim();
    let d = if let Ok(s) = h.parse::<u64>() {
        Duration::from_secs(s)
    } else {
        let at_ms = http_date_ms(h)?;
        Duration::from_millis(u64::try_from(at_ms - now_ms).unwrap_or(0))
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as ms since the Unix epoch.
fn http_date_ms(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_, rest) = s.split_once(", ")?;
    let mut it = rest.split(' ');
    let day: u32 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let month = MONTHS.iter().position(|m| *m == mon)? as u32 + 1;
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if it.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = crate::util::naming::days_from_civil(year, month, day);
    Some(((days * 24 + h) * 60 + m) * 60_000 + sec * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<&str>) -> Answer {
        Answer::Status {
            code,
            retry_after: retry_after.map(str::to_owned),
        }
    }

    #[test]
    fn a_2xx_delivers_and_resets_the_backoff() {
        let mut d = Delivery::new(Duration::from_secs(1), Duration::from_secs(60), 1);
        d.after(&Answer::Failed("refused".into()), 0);
        d.after(&status(503, None), 0);
        assert_eq!(d.failures(), 2);
        assert_eq!(d.after(&status(204, None), 0), Next::Delivered);
        assert_eq!(d.failures(), 0);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap_and_never_give_up() {
        let mut d = Delivery::new(Duration::from_secs(1), Duration::from_secs(30), 7);
        let mut waits = Vec::new();
        for _ in 0..1000 {
            match d.after(&Answer::Failed("timeout".into()), 0) {
                Next::Retry { after, .. } => waits.push(after),
                other => panic!("gave up: {other:?}"),
            }
        }
        assert!(waits[0] <= Duration::from_millis(1200));
        assert!(waits[3] >= Duration::from_millis(6400));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(30)));
        assert!(waits[999] >= Duration::from_secs(24));
    }

    #[test]
    fn client_and_server_errors_are_retried_with_the_status_as_last_error() {
        let mut d = Delivery::new(Duration::from_secs(1), Duration::from_secs(30), 7);
        for code in [400, 401, 404, 429, 500, 502] {
            match d.after(&status(code, None), 0) {
                Next::Retry { error, .. } => assert_eq!(error, format!("HTTP {code}")),
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[test]
    fn gone_disables_the_endpoint() {
        let mut d = Delivery::new(Duration::from_secs(1), Duration::from_secs(30), 7);
        assert!(matches!(
            d.after(&status(410, None), 0),
            Next::Disable { .. }
        ));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_is_honoured() {
        let mut d = Delivery::new(Duration::from_secs(1), Duration::from_secs(30), 7);
        let Next::Retry { after, .. } = d.after(&status(503, Some("120")), 0) else {
            panic!()
        };
        assert_eq!(after, Duration::from_secs(120), "even above retry_max");
        // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT
        let now = 784_111_777_000 - 90_000;
        let Next::Retry { after, .. } =
            d.after(&status(429, Some("Sun, 06 Nov 1994 08:49:37 GMT")), now)
        else {
            panic!()
        };
        assert_eq!(after, Duration::from_secs(90));
        assert_eq!(
            retry_after_delay("Sun, 06 Nov 1994 08:49:37 GMT", now + 100_000),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after_delay("9999999999", 0), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn an_unreadable_retry_after_falls_back_to_the_backoff() {
        let mut d = Delivery::new(Duration::from_secs(1), Duration::from_secs(30), 7);
        let Next::Retry { after, .. } = d.after(&status(503, Some("soon")), 0) else {
            panic!()
        };
        assert!(after <= Duration::from_millis(1200));
        assert_eq!(retry_after_delay("Sun, 06 Nov 1994 25:49:37 GMT", 0), None);
    }
}
