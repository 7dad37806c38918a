//! PostgreSQL's binary COPY format, read into the same text fields the text and CSV
//! readers produce, so one conversion path turns all three into typed Arrow columns.
//!
//! Layout: an 11-byte signature, a 32-bit flags word and a header extension; then per
//! tuple a 16-bit field count and per field a 32-bit length (-1 for NULL) and the value
//! in the type's binary send format; a field count of -1 ends the data.

use datafusion::arrow::datatypes::{DataType, TimeUnit};

pub const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// Microseconds and days between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const PG_EPOCH_DAYS: i32 = 10_957;

type Parsed = Result<Option<(usize, usize)>, String>;

fn be<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// The header: bytes used, or `None` until all of it has arrived.
pub fn parse_header(buf: &[u8], at_end: bool) -> Parsed {
    let need = SIGNATURE.len() + 8;
    if buf.len() < need {
        return if at_end {
            Err("COPY file signature not recognized".into())
        } else {
            Ok(None)
        };
    }
    if &buf[..SIGNATURE.len()] != SIGNATURE {
        return Err("COPY file signature not recognized".into());
    }
    let ext = be::<4>(buf, SIGNATURE.len() + 4).map_or(0, u32::from_be_bytes) as usize;
    if buf.len() < need + ext {
        return if at_end {
            Err("invalid COPY file header (missing extension)".into())
        } else {
            Ok(None)
        };
    }
    Ok(Some((need + ext, 0)))
}

/// One tuple, each field rendered as text for `types` (the COPY columns' types).
pub fn parse_tuple(
    buf: &[u8],
    types: &[&DataType],
    at_end: bool,
    out: &mut Vec<Option<String>>,
) -> Parsed {
    let incomplete = || {
        if at_end {
            Err("incomplete binary COPY data".to_string())
        } else {
            Ok(None)
        }
    };
    let Some(count) = be::<2>(buf, 0).map(i16::from_be_bytes) else {
        return incomplete();
    };
    if count == -1 {
        return Ok(Some((2, 1)));
    }
    if count as usize != types.len() {
        return Err(format!(
            "row field count is {count}, expected {}",
            types.len()
        ));
    }
    let mut at = 2;
    for t in types {
        let Some(len) = be::<4>(buf, at).map(i32::from_be_bytes) else {
            return incomplete();
        };
        at += 4;
        if len < 0 {
            out.push(None);
            continue;
        }
        let Some(value) = buf.get(at..at + len as usize) else {
            return incomplete();
        };
        at += len as usize;
        out.push(Some(to_text(value, t)?));
    }
    Ok(Some((at, 1)))
}

fn to_text(v: &[u8], t: &DataType) -> Result<String, String> {
    let wrong = || format!("incorrect binary data format for type {t}");
    let int = |v: &[u8]| -> Result<i64, String> {
        Ok(match v.len() {
            2 => i16::from_be_bytes([v[0], v[1]]).into(),
            4 => i32::from_be_bytes([v[0], v[1], v[2], v[3]]).into(),
            8 => i64::from_be_bytes(v.try_into().map_err(|_| wrong())?),
            _ => return Err(wrong()),
        })
    };
    Ok(match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => int(v)?.to_string(),
        DataType::Float32 | DataType::Float64 => match v.len() {
            4 => f32::from_be_bytes(v.try_into().map_err(|_| wrong())?).to_string(),
            8 => f64::from_be_bytes(v.try_into().map_err(|_| wrong())?).to_string(),
            _ => return Err(wrong()),
        },
        DataType::Boolean => match v {
            [0] => "f".into(),
            [_] => "t".into(),
            _ => return Err(wrong()),
        },
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => String::from_utf8(v.to_vec())
            .map_err(|_| "invalid byte sequence for encoding \"UTF8\"".to_string())?,
        DataType::Date32 | DataType::Date64 => {
            let days = i32::try_from(int(v)?)
                .ok()
                .and_then(|d| d.checked_add(PG_EPOCH_DAYS))
                .ok_or_else(|| format!("date out of range for type {t}"))?;
            let date =
                chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0).ok_or_else(wrong)?;
            date.format("%Y-%m-%d").to_string()
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let micros = int(v)?.checked_add(PG_EPOCH_MICROS).ok_or_else(wrong)?;
            let ts = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(wrong)?;
            let text = ts.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            if tz.is_some() {
                format!("{text}+00:00")
            } else {
                text
            }
        }
        DataType::Decimal128(..) => numeric(v).ok_or_else(wrong)?,
        other => {
            return Err(format!(
                "binary COPY into a column of type {other} is not supported"
            ))
        }
    })
}

/// PostgreSQL `numeric` send format: ndigits, weight, sign, dscale, base-10000 digits.
fn numeric(v: &[u8]) -> Option<String> {
    let word = |i: usize| be::<2>(v, i * 2).map(u16::from_be_bytes);
    let (ndigits, weight, sign, dscale) = (
        word(0)? as usize,
        word(1)? as i16,
        word(2)?,
        word(3)? as usize,
    );
    if sign == 0xC000 {
        return Some("NaN".into());
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(4 + i)).collect::<Option<_>>()?;
    let mut int_part = String::new();
    for i in 0..=weight.max(0) as usize {
        let d = if weight >= 0 {
            digits.get(i).copied().unwrap_or(0)
        } else {
            0
        };
        if int_part.is_empty() {
            int_part = d.to_string();
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    let mut frac = String::new();
    let first_frac = (weight + 1).max(0) as usize;
    let leading_zero_groups = if weight < -1 {
        (-weight - 1) as usize
    } else {
        0
    };
    frac.push_str(&"0000".repeat(leading_zero_groups));
    for d in digits.iter().skip(first_frac) {
        frac.push_str(&format!("{d:04}"));
    }
    while frac.len() < dscale {
        frac.push('0');
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Some(if dscale > 0 {
        format!("{sign}{int_part}.{frac}")
    } else {
        format!("{sign}{int_part}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(out: &mut Vec<u8>, v: Option<&[u8]>) {
        match v {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }

    #[test]
    fn reads_header_tuples_and_trailer() {
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_header(&data, true), Ok(Some((19, 0))));
        assert_eq!(parse_header(&data[..5], false), Ok(None));
        assert!(parse_header(b"not a copy file at all", true).is_err());

        let mut t = 3i16.to_be_bytes().to_vec();
        field(&mut t, Some(&42i32.to_be_bytes()));
        field(&mut t, Some(b"anna"));
        field(&mut t, None);
        let types = [&DataType::Int32, &DataType::Utf8, &DataType::Float64];
        let mut out = vec![];
        assert_eq!(
            parse_tuple(&t, &types, true, &mut out),
            Ok(Some((t.len(), 1)))
        );
        assert_eq!(out, vec![Some("42".into()), Some("anna".into()), None]);
        let mut out = vec![];
        assert_eq!(
            parse_tuple(&t[..t.len() - 2], &types, false, &mut out),
            Ok(None),
            "waits for more"
        );
        assert_eq!(
            parse_tuple(TRAILER, &types, true, &mut vec![]),
            Ok(Some((2, 1)))
        );
        assert!(
            parse_tuple(&1i16.to_be_bytes(), &types, true, &mut vec![]).is_err(),
            "wrong field count"
        );
    }

    #[test]
    fn converts_dates_timestamps_and_numerics() {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        // 2024-01-02 03:04:05.5 is 757_479_845_500_000 µs after 2000-01-01.
        assert_eq!(
            to_text(&757_479_845_500_000i64.to_be_bytes(), &ts),
            Ok("2024-01-02 03:04:05.500000".into())
        );
        assert_eq!(
            to_text(&8767i32.to_be_bytes(), &DataType::Date32),
            Ok("2024-01-02".into())
        );
        // 1234.5600 = digits [1234, 5600], weight 0, dscale 4.
        let mut n = vec![];
        for w in [2u16, 0, 0, 4, 1234, 5600] {
            n.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(
            to_text(&n, &DataType::Decimal128(10, 4)),
            Ok("1234.5600".into())
        );
        // -0.05 = digits [500], weight -1, dscale 2.
        let mut n = vec![];
        for w in [1u16, 0xFFFF, 0x4000, 2, 500] {
            n.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(
            to_text(&n, &DataType::Decimal128(10, 2)),
            Ok("-0.05".into())
        );
    }
}
