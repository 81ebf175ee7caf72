//! Byte sizes ("2GiB", "500MiB", "10GB", 1048576) and the `min_free` value ("10%" or a size).
//!
//! Hand-written on purpose: the config wants exactly these spellings (binary and decimal
//! units, a bare byte count, a percentage for `min_free`) with its own error messages, a
//! few dozen lines that a byte-size crate would not make shorter.

use std::fmt;

/// How much of the filesystem holding `storage.root` retention keeps free.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MinFree {
    /// Keep at least this many bytes free.
    Bytes(u64),
    /// Keep at least this percentage (0 ≤ p < 100) of the filesystem's total size free.
    Percent(f64),
}

impl MinFree {
    /// The number of bytes to keep free on a filesystem of `total` bytes (percentages round up).
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            MinFree::Bytes(b) => b,
            MinFree::Percent(p) => {
                let b = (total as f64 * p / 100.0).ceil();
                if b >= u64::MAX as f64 {
                    u64::MAX
                } else {
                    b as u64
                }
            }
        }
    }
}

impl Default for MinFree {
    /// 10 % of the filesystem.
    fn default() -> Self {
        MinFree::Percent(10.0)
    }
}

impl fmt::Display for MinFree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MinFree::Bytes(b) => write!(f, "{b} bytes"),
            MinFree::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Units a size may end with. Decimal (kB, MB, ...) and binary (KiB, MiB, ...) units are
/// both accepted, case-insensitively; a bare number is bytes.
const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1_000),
    ("kb", 1_000),
    ("kib", 1 << 10),
    ("m", 1_000_000),
    ("mb", 1_000_000),
    ("mib", 1 << 20),
    ("g", 1_000_000_000),
    ("gb", 1_000_000_000),
    ("gib", 1 << 30),
    ("t", 1_000_000_000_000),
    ("tb", 1_000_000_000_000),
    ("tib", 1 << 40),
];

fn size_error(s: &str) -> String {
    format!("invalid size \"{s}\" (use e.g. \"2GiB\", \"500MiB\")")
}

/// Parse a size such as `"2GiB"`, `"500MiB"`, `"10GB"`, `"1.5 GiB"` or `"1048576"`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim_start().to_ascii_lowercase();
    let mult = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, m)| *m)
        .ok_or_else(|| size_error(s))?;
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(size_error(s));
    }
    match num.split_once('.') {
        None => {
            let n: u64 = num.parse().map_err(|_| size_error(s))?;
            n.checked_mul(mult)
                .ok_or_else(|| format!("size \"{s}\" is too large"))
        }
        Some((int, frac)) => {
            if frac.contains('.') || frac.len() > 9 {
                return Err(size_error(s));
            }
            let int: u64 = int.parse().map_err(|_| size_error(s))?;
            let frac_n: u64 = frac.parse().map_err(|_| size_error(s))?;
            let scale = 10u64.pow(frac.len() as u32);
            let whole = int
                .checked_mul(mult)
                .ok_or_else(|| format!("size \"{s}\" is too large"))?;
            // frac_n < scale ≤ 10^9 and mult ≤ 2^40, so this fits in u128 without overflow.
            let part = (frac_n as u128 * mult as u128 / scale as u128) as u64;
            whole
                .checked_add(part)
                .ok_or_else(|| format!("size \"{s}\" is too large"))
        }
    }
}

/// Parse `min_free`: a percentage such as `"10%"` (0 ≤ p < 100) or a size.
pub fn parse_min_free(s: &str) -> Result<MinFree, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| {
            format!("invalid percentage \"{s}\" (use e.g. \"10%\", or a size like \"500MiB\")")
        })?;
        if !(0.0..100.0).contains(&p) {
            return Err(format!(
                "percentage \"{s}\" must be at least 0% and less than 100%"
            ));
        }
        return Ok(MinFree::Percent(p));
    }
    parse_size(t).map(MinFree::Bytes).map_err(|_| {
        format!("invalid value \"{s}\" (use a percentage like \"10%\" or a size like \"500MiB\")")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_units_are_powers_of_1024() {
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("500MiB").unwrap(), 500 << 20);
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
    }

    #[test]
    fn decimal_units_are_powers_of_1000() {
        assert_eq!(parse_size("10GB").unwrap(), 10_000_000_000);
        assert_eq!(parse_size("3kB").unwrap(), 3_000);
        assert_eq!(parse_size("7M").unwrap(), 7_000_000);
    }

    #[test]
    fn plain_numbers_are_bytes() {
        assert_eq!(parse_size("1048576").unwrap(), 1_048_576);
        assert_eq!(parse_size("12B").unwrap(), 12);
        assert_eq!(parse_size("0").unwrap(), 0);
    }

    #[test]
    fn units_are_case_insensitive_and_may_follow_a_space() {
        assert_eq!(parse_size("2 gib").unwrap(), 2 << 30);
        assert_eq!(parse_size(" 5 MB ").unwrap(), 5_000_000);
    }

    #[test]
    fn fractions_are_accepted() {
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("0.5KiB").unwrap(), 512);
    }

    #[test]
    fn garbage_is_refused_with_an_example() {
        for bad in [
            "2GB!", "", "GiB", "1.2.3G", "-5MiB", "1e9", ".5G", "5.G", "2 GiBs",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains("use e.g. \"2GiB\""), "{bad}: {e}");
            assert!(e.contains(&format!("\"{bad}\"")), "{bad}: {e}");
        }
    }

    #[test]
    fn overflow_is_refused() {
        assert!(parse_size("99999999999TiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn min_free_takes_percentages_or_sizes() {
        assert_eq!(parse_min_free("10%").unwrap(), MinFree::Percent(10.0));
        assert_eq!(parse_min_free("2.5 %").unwrap(), MinFree::Percent(2.5));
        assert_eq!(parse_min_free("500MiB").unwrap(), MinFree::Bytes(500 << 20));
    }

    #[test]
    fn min_free_refuses_100_percent_and_garbage() {
        assert!(parse_min_free("100%").is_err());
        assert!(parse_min_free("-1%").is_err());
        assert!(parse_min_free("ten%").is_err());
        assert!(parse_min_free("lots").unwrap_err().contains("10%"));
    }

    #[test]
    fn percent_of_total_rounds_up() {
        assert_eq!(MinFree::Percent(10.0).bytes(1000), 100);
        assert_eq!(MinFree::Percent(10.0).bytes(1001), 101);
        assert_eq!(MinFree::Bytes(7).bytes(1000), 7);
    }
}
