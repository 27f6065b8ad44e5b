//! Index key encoding: values become byte strings whose byte order is the query engine's value
//! order (`value::compare`, MongoDB's cross-type order), so a range of values is a range of keys.
//!
//! Every encoding is prefix-free (no encoding is a proper prefix of another), so tuples are plain
//! concatenations and a descending field is its encoding with every byte inverted.
//!
//! - a value starts with its type rank (`value::type_rank`: null 1, number 2, string 3, object 4,
//!   array 5, boolean 8, date 9); an empty array at the top level — which sorts before null — is
//!   the single byte 0;
//! - numbers: the order-preserving bits of the largest `f64` not above the value, then how far the
//!   value is above it (non-zero only for integers beyond 2^53): exact for every i64, u64 and f64,
//!   and `1` and `1.0` encode alike, as they compare equal;
//! - strings: UTF-8 with 0x00 written 0x00 0xFF, ended by 0x00 0x00;
//! - booleans one byte; dates the milliseconds as a sign-flipped big-endian i64;
//! - objects: per field the value's rank, the escaped name, the value's payload; then 0x00.
//!   Arrays: per element its rank and payload; then 0x00 (shorter sorts first, as in `compare`).

use serde_json::{Number, Value};

use crate::db::value::{as_date, type_rank};

/// The encoding of an empty array reached by an indexed path (it sorts before null).
pub const EMPTY_ARRAY: u8 = 0;
pub const RANK_NULL: u8 = 1;
pub const RANK_STRING: u8 = 3;

/// The encoding of one indexed value (`None`: a missing field, indexed as null; an empty array:
/// the [`EMPTY_ARRAY`] byte, as a sort puts it first).
pub fn encode(v: Option<&Value>, out: &mut Vec<u8>) {
    match v {
        None => out.push(RANK_NULL),
        Some(Value::Array(items)) if items.is_empty() => out.push(EMPTY_ARRAY),
        Some(v) => {
            out.push(type_rank(v));
            payload(v, out);
        }
    }
}

/// [`encode`] with every byte inverted (a descending field).
pub fn encode_desc(v: Option<&Value>, out: &mut Vec<u8>) {
    let start = out.len();
    encode(v, out);
    invert(&mut out[start..]);
}

pub fn invert(bytes: &mut [u8]) {
    bytes.iter_mut().for_each(|b| *b = !*b);
}

/// The escaped bytes of a string without its terminator: a prefix of the encoding of every string
/// that starts with `s`.
pub fn string_prefix(s: &str, out: &mut Vec<u8>) {
    out.push(RANK_STRING);
    escape(s.as_bytes(), out);
}

/// The smallest key greater than every key starting with `prefix` (`None`: there is none).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn payload(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push(u8::from(*b)),
        Value::Number(n) => number(n, out),
        Value::String(s) => {
            escape(s.as_bytes(), out);
            out.extend_from_slice(&[0, 0]);
        }
        Value::Object(m) => match as_date(v) {
            Some(ms) => out.extend_from_slice(&((ms as u64) ^ (1 << 63)).to_be_bytes()),
            None => {
                for (k, x) in m {
                    out.push(type_rank(x));
                    escape(k.as_bytes(), out);
                    out.extend_from_slice(&[0, 0]);
                    payload(x, out);
                }
                out.push(0);
            }
        },
        Value::Array(items) => {
            for x in items {
                out.push(type_rank(x));
                payload(x, out);
            }
            out.push(0);
        }
    }
}

fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

fn number(n: &Number, out: &mut Vec<u8>) {
    let int = n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    let (floor, above) = match int {
        Some(i) => {
            let mut f = i as f64;
            if f as i128 > i {
                // the next f64 toward -inf (f is not 0: 0 converts exactly)
                f = f64::from_bits(if f > 0.0 { f.to_bits() - 1 } else { f.to_bits() + 1 });
            }
            (f, u64::try_from(i - f as i128).unwrap_or(u64::MAX))
        }
        None => (n.as_f64().unwrap_or(0.0), 0),
    };
    let f = if floor == 0.0 { 0.0 } else { floor }; // -0.0 == 0.0
    let bits = f.to_bits();
    let ordered = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    out.extend_from_slice(&ordered.to_be_bytes());
    out.extend_from_slice(&above.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::value::compare;
    use serde_json::json;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(Some(v), &mut out);
        out
    }

    #[test]
    fn byte_order_is_the_value_order() {
        let values = [
            json!(null),
            json!(-1e300),
            json!(i64::MIN),
            json!(-9007199254740993_i64),
            json!(-9007199254740992_i64),
            json!(-2.5),
            json!(-1),
            json!(0),
            json!(0.5),
            json!(1),
            json!(1.5),
            json!(9007199254740992_i64),
            json!(9007199254740993_i64),
            json!(9007199254740994_i64),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1e300),
            json!(""),
            json!("\u{0}"),
            json!("\u{0}a"),
            json!("a"),
            json!("a\u{0}"),
            json!("ab"),
            json!("b"),
            json!("é"),
            json!({}),
            json!({"a": null}),
            json!({"a": 1}),
            json!({"a": 1, "b": 1}),
            json!({"a": 2}),
            json!({"b": 0}),
            json!({"a": "x"}),
            json!({"a": []}),
            json!([[]]),
            json!([1]),
            json!([1, 2]),
            json!([2]),
            json!(false),
            json!(true),
            json!({"$date": -5}),
            json!({"$date": 0}),
            json!({"$date": 1_700_000_000_000_i64}),
        ];
        for a in &values {
            for b in &values {
                assert_eq!(
                    enc(a).cmp(&enc(b)),
                    compare(a, b),
                    "{a} vs {b}: {:?} vs {:?}",
                    enc(a),
                    enc(b)
                );
            }
        }
    }

    #[test]
    fn equal_numbers_encode_alike_and_descending_reverses() {
        assert_eq!(enc(&json!(1)), enc(&json!(1.0)));
        assert_eq!(enc(&json!(0)), enc(&json!(-0.0)));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_desc(Some(&json!(1)), &mut a);
        encode_desc(Some(&json!(2)), &mut b);
        assert!(a > b);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        encode_desc(Some(&json!("ab")), &mut x);
        encode_desc(Some(&json!("abc")), &mut y);
        assert!(x > y, "a prefix-free encoding reverses cleanly");
    }

    #[test]
    fn missing_is_null_and_an_empty_array_sorts_first() {
        let mut missing = Vec::new();
        encode(None, &mut missing);
        assert_eq!(missing, enc(&json!(null)));
        assert!(enc(&json!([])) < missing);
    }

    #[test]
    fn a_string_prefix_covers_exactly_the_strings_that_start_with_it() {
        let mut p = Vec::new();
        string_prefix("ab", &mut p);
        let end = prefix_end(&p).unwrap();
        for (s, inside) in [
            ("ab", true),
            ("abc", true),
            ("ab\u{0}", true),
            ("a", false),
            ("ac", false),
            ("b", false),
        ] {
            let k = enc(&json!(s));
            assert_eq!(k >= p && k < end, inside, "{s}");
        }
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}
