//! AMF0 (Adobe AMF0 specification, 2006): the encoding of RTMP commands and of FLV script
//! data (`onMetaData`). Only what publishers send, what the replies need and what our FLV
//! files hold. Pure; decoding is bounded by the input (no count read from the wire is used
//! to reserve memory) and by a nesting depth.

/// Nesting deeper than this is refused (a stack-exhaustion guard).
const MAX_DEPTH: usize = 16;

/// One AMF0 value.
#[derive(Clone, Debug, PartialEq)]
pub enum Amf {
    Number(f64),
    Boolean(bool),
    /// String, long string or XML document.
    String(String),
    /// Anonymous object, ECMA array or typed object: the properties in order.
    Object(Vec<(String, Amf)>),
    Null,
    Undefined,
    StrictArray(Vec<Amf>),
    /// Milliseconds since the epoch (the time zone is ignored).
    Date(f64),
}

impl Amf {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Amf::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// A property of an object, by name.
    pub fn get(&self, key: &str) -> Option<&Amf> {
        match self {
            Amf::Object(props) => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// An object from `(name, value)` pairs.
    pub fn object<const N: usize>(props: [(&str, Amf); N]) -> Amf {
        Amf::Object(props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    pub fn string(s: &str) -> Amf {
        Amf::String(s.to_owned())
    }
}

/// Decodes every value in `data` (a command: name, transaction id, arguments).
pub fn decode_all(mut data: &[u8]) -> Result<Vec<Amf>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        out.push(decode(&mut data, 0)?);
    }
    Ok(out)
}

/// Decodes the first `n` values of `data` (or fewer when it ends), ignoring what follows
/// them: FLV script data may be padded after its values.
pub fn decode_prefix(mut data: &[u8], n: usize) -> Result<Vec<Amf>, String> {
    let mut out = Vec::new();
    while !data.is_empty() && out.len() < n {
        out.push(decode(&mut data, 0)?);
    }
    Ok(out)
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if data.len() < n {
        return Err(format!("{n} bytes needed, {} left", data.len()));
    }
    let (head, rest) = data.split_at(n);
    *data = rest;
    Ok(head)
}

fn u16_be(data: &mut &[u8]) -> Result<usize, String> {
    let b = take(data, 2)?;
    Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
}

fn u32_be(data: &mut &[u8]) -> Result<usize, String> {
    let b = take(data, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

fn f64_be(data: &mut &[u8]) -> Result<f64, String> {
    let b = take(data, 8)?;
    Ok(f64::from_be_bytes(b.try_into().unwrap_or_default()))
}

fn utf8(data: &mut &[u8], len: usize) -> Result<String, String> {
    Ok(String::from_utf8_lossy(take(data, len)?).into_owned())
}

fn decode(data: &mut &[u8], depth: usize) -> Result<Amf, String> {
    if depth > MAX_DEPTH {
        return Err(format!("values nested deeper than {MAX_DEPTH}"));
    }
    let marker = take(data, 1)?[0];
    Ok(match marker {
        0x00 => Amf::Number(f64_be(data)?),
        0x01 => Amf::Boolean(take(data, 1)?[0] != 0),
        0x02 => {
            let n = u16_be(data)?;
            Amf::String(utf8(data, n)?)
        }
        0x03 => Amf::Object(properties(data, depth)?),
        0x05 => Amf::Null,
        0x06 => Amf::Undefined,
        0x08 => {
            u32_be(data)?; // approximate count; the end marker is what counts
            Amf::Object(properties(data, depth)?)
        }
        0x0a => {
            let n = u32_be(data)?;
            // Every value takes at least one byte, so a count beyond the input is a lie.
            if n > data.len() {
                return Err(format!(
                    "strict array of {n} values in {} bytes",
                    data.len()
                ));
            }
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(decode(data, depth + 1)?);
            }
            Amf::StrictArray(items)
        }
        0x0b => {
            let ms = f64_be(data)?;
            take(data, 2)?;
            Amf::Date(ms)
        }
        0x0c | 0x0f => {
            let n = u32_be(data)?;
            Amf::String(utf8(data, n)?)
        }
        0x10 => {
            let n = u16_be(data)?;
            take(data, n)?; // class name
            Amf::Object(properties(data, depth)?)
        }
        0x07 => return Err("references are not supported".into()),
        0x11 => return Err("AMF3 values are not supported (use AMF0)".into()),
        m => return Err(format!("unknown type marker 0x{m:02x}")),
    })
}

/// Properties up to the empty-name + object-end marker.
fn properties(data: &mut &[u8], depth: usize) -> Result<Vec<(String, Amf)>, String> {
    let mut props = Vec::new();
    loop {
        let n = u16_be(data)?;
        if n == 0 && data.first() == Some(&0x09) {
            take(data, 1)?;
            return Ok(props);
        }
        let key = utf8(data, n)?;
        let value = decode(data, depth + 1)?;
        props.push((key, value));
    }
}

/// Appends `v` to `out`.
pub fn encode(v: &Amf, out: &mut Vec<u8>) {
    match v {
        Amf::Number(n) => {
            out.push(0x00);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf::Boolean(b) => out.extend_from_slice(&[0x01, u8::from(*b)]),
        Amf::String(s) if s.len() <= usize::from(u16::MAX) => {
            out.push(0x02);
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Amf::String(s) => {
            out.push(0x0c);
            out.extend_from_slice(&(s.len().min(u32::MAX as usize) as u32).to_be_bytes());
            out.extend_from_slice(&s.as_bytes()[..s.len().min(u32::MAX as usize)]);
        }
        Amf::Object(props) => {
            out.push(0x03);
            for (k, v) in props {
                let k = &k.as_bytes()[..k.len().min(usize::from(u16::MAX))];
                out.extend_from_slice(&(k.len() as u16).to_be_bytes());
                out.extend_from_slice(k);
                encode(v, out);
            }
            out.extend_from_slice(&[0, 0, 0x09]);
        }
        Amf::Null => out.push(0x05),
        Amf::Undefined => out.push(0x06),
        Amf::StrictArray(items) => {
            out.push(0x0a);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for v in items {
                encode(v, out);
            }
        }
        Amf::Date(ms) => {
            out.push(0x0b);
            out.extend_from_slice(&ms.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
    }
}

/// Appends an ECMA array (marker 0x08) of `props`. Decoding reads it back as an
/// [`Amf::Object`]; FLV's `onMetaData` must be written as one (ffmpeg only takes metadata
/// out of an ECMA array).
pub fn encode_ecma_array(props: &[(String, Amf)], out: &mut Vec<u8>) {
    out.push(0x08);
    out.extend_from_slice(&(props.len().min(u32::MAX as usize) as u32).to_be_bytes());
    for (k, v) in props {
        let k = &k.as_bytes()[..k.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(k.len() as u16).to_be_bytes());
        out.extend_from_slice(k);
        encode(v, out);
    }
    out.extend_from_slice(&[0, 0, 0x09]);
}

/// Encodes a command or data message: every value in order.
pub fn encode_all(values: &[Amf]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode(v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_command_round_trips() {
        let cmd = [
            Amf::string("connect"),
            Amf::Number(1.0),
            Amf::object([
                ("app", Amf::string("live")),
                ("tcUrl", Amf::string("rtmp://127.0.0.1:1935/live")),
                ("fpad", Amf::Boolean(false)),
                ("audioCodecs", Amf::Number(4071.0)),
            ]),
            Amf::Null,
            Amf::StrictArray(vec![Amf::Undefined, Amf::Date(5.0)]),
        ];
        let bytes = encode_all(&cmd);
        let back = decode_all(&bytes).unwrap();
        assert_eq!(back, cmd);
        assert_eq!(back[2].get("app").and_then(Amf::as_str), Some("live"));
    }

    #[test]
    fn ecma_array_from_on_metadata_is_read_as_an_object() {
        let mut b = vec![0x08, 0, 0, 0, 1, 0, 5];
        b.extend_from_slice(b"width");
        b.push(0x00);
        b.extend_from_slice(&320f64.to_be_bytes());
        b.extend_from_slice(&[0, 0, 9]);
        let v = decode_all(&b).unwrap();
        assert_eq!(v[0].get("width"), Some(&Amf::Number(320.0)));
    }

    #[test]
    fn an_ecma_array_round_trips_as_an_object() {
        let props = vec![
            ("duration".to_owned(), Amf::Number(2.5)),
            ("stereo".to_owned(), Amf::Boolean(true)),
        ];
        let mut b = Vec::new();
        encode_ecma_array(&props, &mut b);
        assert_eq!(&b[..5], &[0x08, 0, 0, 0, 2]);
        assert_eq!(decode_all(&b).unwrap(), vec![Amf::Object(props)]);
    }

    #[test]
    fn truncated_input_is_an_error_at_every_cut() {
        let bytes = encode_all(&[
            Amf::string("publish"),
            Amf::Number(5.0),
            Amf::Null,
            Amf::string("cam8?record_interval=2"),
            Amf::string("live"),
        ]);
        for n in 1..bytes.len() {
            let r = decode_all(&bytes[..n]);
            assert!(r.is_err() || r.unwrap().len() < 5, "cut at {n}");
        }
    }

    #[test]
    fn huge_strict_array_count_is_refused_without_allocating() {
        let b = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x05];
        assert!(decode_all(&b).unwrap_err().contains("strict array"));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut b = Vec::new();
        for _ in 0..100 {
            b.extend_from_slice(&[0x03, 0, 1, b'a']);
        }
        assert!(decode_all(&b).unwrap_err().contains("deeper"));
    }
}
