//! Sizes as users write them and as tables show them.
//!
//! A size needs a unit (a bare number is refused rather than guessed: LINSTOR reads it as KiB,
//! other tools as bytes); `B` means bytes. Units are binary whatever their spelling (`100M`,
//! `100MB`, `100MiB` are all 100 × 2^20 bytes), as in the LINSTOR client.

/// Parses `text` (`64MiB`, `1G`, `4096B`, `10T`) into bytes.
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "invalid size {text:?}: give a number with a unit, e.g. 100MiB, 10G, 4096B"
        ));
    }
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        "P" | "PB" | "PIB" => 50,
        "" => {
            return Err(format!(
                "size {text:?} has no unit: write e.g. {number}MiB, {number}GiB or {number}B"
            ));
        }
        other => {
            return Err(format!(
                "invalid size unit {other:?} in {text:?}: use B, KiB, MiB, GiB, TiB or PiB"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}: {number:?} is not a number"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("size {text:?} is too large"));
    }
    Ok(bytes as u64)
}

/// Checks a volume size: non-zero, a multiple of 4 KiB, at most 16 TiB (what the metadata and the
/// engine are tested with).
pub fn check_volume(size: u64) -> Result<(), String> {
    const MAX: u64 = 16 << 40;
    if size == 0 {
        return Err("a volume size of 0 is not allowed: give a size of at least 4KiB".into());
    }
    if !size.is_multiple_of(4096) {
        return Err(format!(
            "a volume size must be a multiple of 4KiB; {} is not (use {})",
            size,
            human((size / 4096 + 1) * 4096)
        ));
    }
    if size > MAX {
        return Err(format!(
            "volume size {} is larger than the supported maximum of 16 TiB",
            human(size)
        ));
    }
    Ok(())
}

/// A size for tables: `100 MiB`, `1.50 GiB`, `4 KiB`, `512 B`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut v = bytes as f64;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if (v - v.round()).abs() < 0.005 {
        format!("{} {}", v.round() as u64, UNITS[unit])
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_units() {
        assert_eq!(parse("64MiB"), Ok(64 << 20));
        assert_eq!(parse("64M"), Ok(64 << 20));
        assert_eq!(parse("1G"), Ok(1 << 30));
        assert_eq!(parse("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse("4096B"), Ok(4096));
        assert!(parse("64").unwrap_err().contains("no unit"));
        assert!(parse("ten MiB").is_err());
        assert!(parse("10XB").unwrap_err().contains("invalid size unit"));
    }

    #[test]
    fn volume_sizes() {
        assert!(check_volume(0).is_err());
        assert!(check_volume(4097).unwrap_err().contains("multiple of 4KiB"));
        assert!(check_volume(17 << 40).unwrap_err().contains("16 TiB"));
        assert!(check_volume(64 << 20).is_ok());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(100 << 20), "100 MiB");
        assert_eq!(human(3 << 29), "1.50 GiB");
        assert_eq!(human(512), "512 B");
    }
}
