//! Request bodies and signatures, pure.
//!
//! - `standard`: the body is the MQTT event's JSON ([`crate::sync::events::payload`]:
//!   `id`, `kind`, `device`, `at_ms`, `event_seq`, then the event's own fields), signed per Standard Webhooks 1.0: `webhook-id` = the event id,
//!   `webhook-timestamp` = unix seconds, `webhook-signature` = `v1,` + base64 of
//!   HMAC-SHA256(key, `{id}.{timestamp}.{body}`), the key being the base64 after `whsec_`.
//! - `tencent`: Tencent Cloud's recording callback (event 100) for a finished file, so
//!   existing receivers work unchanged. `sign` = hex MD5(key + t), `t` = now + 600 s: it
//!   proves the sender knows the key but does **not** cover the body (Tencent's design).

use base64::Engine;

use crate::sync::events::{Event, EventKind};

/// The `webhook-signature` header value for `body` sent as `id` at `timestamp`.
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&k);
    ctx.update(format!("{id}.{timestamp}.").as_bytes());
    ctx.update(body);
    let tag = ctx.sign();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

/// The event-100 body for a finished-file event (`segment.closed`, `segment.recovered`,
/// `segment.uploaded`),
/// signed with `key` at wall time `now_s`; `None` for other kinds (not sent to a tencent
/// endpoint). `video_url` is the uploaded object's URL (`segment.uploaded`), empty for a
/// `segment.closed` (the file is only on the box).
pub fn tencent_body(event: &Event, key: &str, now_s: i64) -> Option<Vec<u8>> {
    if !matches!(
        event.kind,
        EventKind::SegmentClosed | EventKind::SegmentRecovered | EventKind::SegmentUploaded
    ) {
        return None;
    }
    let b: serde_json::Value = serde_json::from_str(&event.body).ok()?;
    let num = |k: &str| b.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
    let text = |k: &str| {
        b.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let duration_s = (num("end_ms") - num("start_ms")).max(0) / 1000;
    let t = now_s + 600;
    let stream = text("stream_id");
    let v = serde_json::json!({
        "event_type": 100,
        "stream_id": stream,
        "channel_id": stream,
        "app": text("app"),
        "file_id": text("file_id"),
        "file_format": text("file_format"),
        "file_size": num("file_size"),
        "start_time": num("start_time"),
        "end_time": num("end_time"),
        "duration": duration_s,
        "video_url": text("video_url"),
        "t": t,
        "sign": tencent_sign(key, t),
    });
    Some(serde_json::to_vec(&v).expect("JSON serializes"))
}

/// hex MD5(key + t).
pub fn tencent_sign(key: &str, t: i64) -> String {
    use md5::{Digest, Md5};
    let d = Md5::digest(format!("{key}{t}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed() -> Event {
        Event {
            id: "edge-1-seg-cam1-3-closed".into(),
            kind: EventKind::SegmentClosed,
            at_ms: 42,
            body: r#"{"stream_id":"cam1","app":"live","file_id":"7","start_time":100,"end_time":160,"start_ms":100000,"end_ms":160500,"file_format":"mp4","file_size":1234}"#.into(),
        }
    }

    #[test]
    fn the_standard_signature_matches_the_specs_example() {
        // From the Standard Webhooks reference libraries' tests.
        let key = crate::config::callbacks::standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let sig = standard_signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn the_tencent_body_has_event_100_fields_and_an_md5_sign() {
        let v: serde_json::Value =
            serde_json::from_slice(&tencent_body(&closed(), "k3y", 1000).unwrap()).unwrap();
        assert_eq!(v["event_type"], 100);
        assert_eq!(v["stream_id"], "cam1");
        assert_eq!(v["channel_id"], "cam1");
        assert_eq!(v["start_time"], 100);
        assert_eq!(v["duration"], 60);
        assert_eq!(v["file_size"], 1234);
        assert_eq!(v["video_url"], "");
        assert_eq!(v["t"], 1600);
        assert_eq!(v["sign"], tencent_sign("k3y", 1600));
        assert_eq!(
            tencent_sign("", 0),
            "cfcd208495d565ef66e7dff9f98764da",
            "md5(\"0\")"
        );
    }

    #[test]
    fn other_kinds_have_no_tencent_body() {
        let mut e = closed();
        e.kind = EventKind::SourceState;
        assert!(tencent_body(&e, "k", 0).is_none());
    }
}
