//! Decoding stored documents during scans: only the top-level fields a query or sort reads are
//! parsed into values; the rest of the JSON is validated and skipped without allocating.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Which top-level fields to decode: `None` = the whole document.
pub type Fields<'a> = Option<&'a [&'a str]>;

pub fn decode(bytes: &[u8], fields: Fields<'_>) -> serde_json::Result<Value> {
    let Some(fields) = fields else {
        return serde_json::from_slice(bytes);
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let doc = Pick(fields).deserialize(&mut de)?;
    de.end()?;
    Ok(doc)
}

struct Pick<'f>(&'f [&'f str]);

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if self.0.contains(&key.as_ref()) {
                out.insert(key.into_owned(), map.next_value::<Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(out))
    }
}

/// A map key, borrowed from the input unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_only_the_named_fields() {
        let bytes = br#"{"_id":"a","n":5,"big":{"x":[1,2,{"y":"z"}]},"t\u00e9":"esc","s":"x"}"#;
        assert_eq!(decode(bytes, Some(&["n", "té"])).unwrap(), json!({"n": 5, "té": "esc"}));
        assert_eq!(decode(bytes, Some(&[])).unwrap(), json!({}));
        assert_eq!(decode(bytes, None).unwrap()["big"]["x"][2]["y"], json!("z"));
    }

    #[test]
    fn malformed_json_is_still_an_error() {
        assert!(decode(br#"{"n":5,"x":[1,}"#, Some(&["n"])).is_err());
        assert!(decode(br#"{"n":5} trailing"#, Some(&["n"])).is_err());
        assert!(decode(br#"[1,2]"#, Some(&["n"])).is_err());
    }
}
