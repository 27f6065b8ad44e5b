//! Collection schemas: a JSON Schema compiled once when an admin sets it, the check of a document
//! about to be stored, and the violation messages (each failing path and reason, capped).
//!
//! What is accepted: drafts 4, 6, 7, 2019-09 and 2020-12, chosen by `$schema` (2020-12 when it is
//! absent; any other `$schema` is refused). Compilation is offline: a `$ref` to anything outside
//! the schema itself (http, file, another id) is refused, never fetched. `format` is asserted (an
//! invalid email is a violation) and an unknown format is refused when the schema is set.
//!
//! What a schema sees is the document as stored: `_id` (a string) always present and first,
//! `_openid` when the document has an owner, and dates as their stored form `{"$date": <ms>}`.

use std::fmt::Write as _;

use jsonschema::{Draft, ValidationError, Validator};
use serde_json::Value;

use super::DbError;

/// Largest schema accepted, in bytes of its JSON text.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// How many failures a violation message lists (the rest are counted).
pub const MAX_LISTED: usize = 10;
/// Longest reason kept for one failure; longer ones (which quote large values) are cut.
const MAX_REASON_CHARS: usize = 200;

/// A compiled collection schema and the JSON it was compiled from.
pub struct Schema {
    source: Value,
    validator: Validator,
}

/// One failing location of a document: a JSON Pointer into it (`/` is the document itself) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub path: String,
    pub reason: String,
}

/// Why a document does not match: the first [`MAX_LISTED`] failures and how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failures {
    pub listed: Vec<Failure>,
    pub total: usize,
}

impl Failures {
    /// `/age: "x" is not of type "integer"; /: "name" is a required property (and 3 more)`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, f) in self.listed.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            let _ = write!(out, "{}: {}", f.path, f.reason);
        }
        let more = self.total - self.listed.len();
        if more > 0 {
            let _ = write!(out, " (and {more} more)");
        }
        out
    }

    /// The error for a write refused because of these failures; `what` names the document.
    pub fn into_error(self, what: &str) -> DbError {
        DbError::SchemaViolation(format!(
            "{what} does not match the collection schema: {}",
            self.describe()
        ))
    }
}

/// The stored documents of a collection checked against its schema.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Whether the collection has a schema (without one, every document matches).
    pub schema_set: bool,
    pub checked: u64,
    pub violating: u64,
    /// The first violating documents, in `_id` order.
    pub sample: Vec<Violation>,
}

/// One stored document that does not match, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Violation {
    #[serde(rename = "_id")]
    pub id: String,
    /// The first [`MAX_LISTED`] failures.
    pub failures: Vec<Failure>,
    pub failure_count: usize,
}

impl Schema {
    /// Compiles a schema, or says what is wrong with it (`InvalidSchema`).
    pub fn compile(source: Value) -> Result<Schema, DbError> {
        let size = serde_json::to_vec(&source)
            .map_err(|e| DbError::Storage(e.to_string()))?
            .len();
        if size > MAX_SCHEMA_BYTES {
            return Err(DbError::InvalidSchema(format!(
                "the schema is {size} bytes, more than the maximum of {MAX_SCHEMA_BYTES} bytes"
            )));
        }
        let draft = match &source {
            Value::Object(m) => match m.get("$schema") {
                None => Draft::Draft202012,
                Some(Value::String(uri)) => match Draft::from_schema_uri(uri) {
                    Draft::Unknown => return Err(unknown_draft(uri)),
                    d => d,
                },
                Some(_) => return Err(DbError::InvalidSchema("`$schema` must be a string".into())),
            },
            Value::Bool(_) => Draft::Draft202012,
            _ => {
                return Err(DbError::InvalidSchema(
                    "a schema must be a JSON object (or true/false)".into(),
                ))
            }
        };
        let validator = jsonschema::options()
            .with_draft(draft)
            .offline()
            .should_validate_formats(true)
            .should_ignore_unknown_formats(false)
            .build(&source)
            .map_err(|e| compile_error(&e))?;
        Ok(Schema { source, validator })
    }

    /// The schema as it was set.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// `None` if `doc` matches, otherwise its failures.
    pub fn check(&self, doc: &Value) -> Option<Failures> {
        if self.validator.is_valid(doc) {
            return None;
        }
        let mut listed = Vec::new();
        let mut total = 0;
        for e in self.validator.iter_errors(doc) {
            total += 1;
            if listed.len() < MAX_LISTED {
                listed.push(Failure {
                    path: pointer(e.instance_path().as_str()),
                    reason: cut(e.to_string()),
                });
            }
        }
        // `is_valid` and `iter_errors` agree; should they not, the document is still refused
        if total == 0 {
            listed.push(Failure {
                path: "/".into(),
                reason: "does not match the schema".into(),
            });
            total = 1;
        }
        Some(Failures { listed, total })
    }

    /// Refuses `doc` with `SchemaViolation` unless it matches; `what` names it in the message.
    pub fn require(&self, doc: &Value, what: impl FnOnce() -> String) -> Result<(), DbError> {
        match self.check(doc) {
            None => Ok(()),
            Some(f) => Err(f.into_error(&what())),
        }
    }
}

fn unknown_draft(uri: &str) -> DbError {
    DbError::InvalidSchema(format!(
        "unsupported `$schema` `{}`: use draft 4, 6, 7, 2019-09 or 2020-12 \
         (e.g. https://json-schema.org/draft/2020-12/schema), or leave it out for 2020-12",
        uri.chars().take(128).collect::<String>()
    ))
}

fn compile_error(e: &ValidationError<'_>) -> DbError {
    use jsonschema::error::ValidationErrorKind;
    let message = match e.kind() {
        ValidationErrorKind::Referencing(jsonschema::ReferencingError::Unretrievable { uri, .. }) => format!(
            "`$ref` {} points outside the schema: remote and file references are never fetched \
             (put the definition under `$defs` and use `#/$defs/…`)",
            cut(uri.clone())
        ),
        ValidationErrorKind::Referencing(r) => format!("a `$ref` cannot be resolved: {}", cut(r.to_string())),
        _ => {
            let text = e.to_string();
            // the crate's own advice ("adjust configuration …") is not something a user can follow
            let unknown_format = text
                .strip_prefix("Unknown format: '")
                .and_then(|rest| rest.split_once('\''))
                .map(|(name, _)| name.to_string());
            let why = match unknown_format {
                Some(name) => format!(
                    "unknown format `{}` (formats are checked, so an unknown one is refused; known ones include \
                     date-time, date, time, email, hostname, ipv4, ipv6, uri, uuid, regex)",
                    cut(name)
                ),
                None => cut(text),
            };
            format!("invalid schema at {}: {why}", pointer(e.instance_path().as_str()))
        }
    };
    DbError::InvalidSchema(message)
}

/// The document itself is `/` (an empty JSON Pointer is hard to read in a message).
fn pointer(p: &str) -> String {
    if p.is_empty() {
        "/".into()
    } else {
        p.to_string()
    }
}

fn cut(mut s: String) -> String {
    if let Some((i, _)) = s.char_indices().nth(MAX_REASON_CHARS) {
        s.truncate(i);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn invalid(schema: Value) -> String {
        match Schema::compile(schema) {
            Err(DbError::InvalidSchema(m)) => m,
            Err(e) => panic!("wrong error {e:?}"),
            Ok(_) => panic!("compiled"),
        }
    }

    fn person() -> Schema {
        Schema::compile(json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "age": {"type": "integer", "minimum": 0},
                "email": {"type": "string", "format": "email"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
        }))
        .expect("compiles")
    }

    #[test]
    fn valid_documents_pass() {
        let s = person();
        assert_eq!(
            s.check(&json!({"_id": "a", "name": "Ann", "age": 3, "tags": ["x"]})),
            None
        );
        assert!(s.require(&json!({"_id": "a", "name": "Ann"}), || "doc".into()).is_ok());
    }

    #[test]
    fn failures_name_each_path_and_reason() {
        let s = person();
        let f = s
            .check(&json!({"_id": "a", "age": -1, "email": "nope", "tags": ["x", 2]}))
            .expect("fails");
        assert_eq!(f.total, 4, "{f:?}");
        let paths: Vec<&str> = f.listed.iter().map(|f| f.path.as_str()).collect();
        for p in ["/", "/age", "/email", "/tags/1"] {
            assert!(paths.contains(&p), "{p} missing in {paths:?}");
        }
        let msg = f.into_error("document `a`").to_string();
        assert!(
            msg.starts_with("document `a` does not match the collection schema: "),
            "{msg}"
        );
        assert!(msg.contains("/: \"name\" is a required property"), "{msg}");
        assert!(msg.contains("/age: -1 is less than the minimum of 0"), "{msg}");
        assert!(msg.contains("/email: \"nope\" is not a \"email\""), "{msg}");
        assert!(msg.contains("/tags/1: 2 is not of type \"string\""), "{msg}");
        assert!(!msg.contains("more)"), "{msg}");
    }

    #[test]
    fn long_lists_are_capped_and_counted() {
        let s = Schema::compile(json!({"additionalProperties": {"type": "string"}})).expect("compiles");
        let doc: serde_json::Map<String, Value> = (0..25).map(|i| (format!("f{i:02}"), json!(i))).collect();
        let f = s.check(&Value::Object(doc)).expect("fails");
        assert_eq!((f.listed.len(), f.total), (MAX_LISTED, 25));
        assert!(f.describe().ends_with(" (and 15 more)"), "{}", f.describe());
    }

    #[test]
    fn long_reasons_are_cut() {
        let s = Schema::compile(json!({"properties": {"a": {"type": "integer"}}})).expect("compiles");
        let f = s.check(&json!({"a": "x".repeat(5000)})).expect("fails");
        assert!(f.listed[0].reason.chars().count() <= MAX_REASON_CHARS + 1);
        assert!(f.listed[0].reason.ends_with('…'));
    }

    #[test]
    fn dates_are_seen_in_their_stored_form() {
        let s = Schema::compile(json!({
            "properties": {"due": {
                "type": "object", "required": ["$date"], "properties": {"$date": {"type": "integer"}},
            }},
        }))
        .expect("compiles");
        assert_eq!(s.check(&json!({"due": {"$date": 1_700_000_000_000i64}})), None);
        assert!(s.check(&json!({"due": "2024-01-01"})).is_some());
    }

    #[test]
    fn drafts_are_chosen_by_dollar_schema() {
        // draft 4: exclusiveMaximum is a boolean; in 2020-12 it is a number
        let d4 = json!({"$schema": "http://json-schema.org/draft-04/schema#",
                        "properties": {"n": {"maximum": 5, "exclusiveMaximum": true}}});
        let s = Schema::compile(d4).expect("draft 4");
        assert!(s.check(&json!({"n": 5})).is_some());
        assert_eq!(s.check(&json!({"n": 4})), None);
        for uri in [
            "http://json-schema.org/draft-06/schema#",
            "http://json-schema.org/draft-07/schema#",
            "https://json-schema.org/draft/2019-09/schema",
            "https://json-schema.org/draft/2020-12/schema",
        ] {
            assert!(
                Schema::compile(json!({"$schema": uri, "type": "object"})).is_ok(),
                "{uri}"
            );
        }
        let m = invalid(json!({"$schema": "https://example.com/my-meta", "type": "object"}));
        assert!(m.contains("unsupported `$schema`"), "{m}");
        assert!(invalid(json!({"$schema": 7})).contains("`$schema` must be a string"));
    }

    #[test]
    fn invalid_schemas_are_refused_with_the_problem() {
        let m = invalid(json!({"type": "objekt"}));
        assert!(m.contains("invalid schema at /type"), "{m}");
        let m = invalid(json!({"properties": {"a": {"minLength": -1}}}));
        assert!(m.contains("/properties/a/minLength"), "{m}");
        let m = invalid(json!({"properties": {"a": {"pattern": "(unclosed"}}}));
        assert!(m.contains("/properties/a/pattern"), "{m}");
        let m = invalid(json!({"properties": {"a": {"format": "no-such-format"}}}));
        assert!(
            m.contains("/properties/a/format: unknown format `no-such-format`"),
            "{m}"
        );
        assert!(invalid(json!([1])).contains("must be a JSON object"));
        assert!(invalid(json!("x")).contains("must be a JSON object"));
    }

    #[test]
    fn remote_and_file_refs_are_refused_not_fetched() {
        for r in [
            "https://example.com/schemas/person.json",
            "http://127.0.0.1:9/x.json",
            "file:///etc/passwd",
        ] {
            let m = invalid(json!({"properties": {"p": {"$ref": r}}}));
            assert!(m.contains(r) && m.contains("never fetched"), "{r}: {m}");
        }
        let m = invalid(json!({"properties": {"p": {"$ref": "#/$defs/missing"}}}));
        assert!(
            m.contains("a `$ref` cannot be resolved") && m.contains("/$defs/missing"),
            "{m}"
        );
        // references inside the schema work
        let s = Schema::compile(json!({
            "$defs": {"pos": {"type": "integer", "minimum": 1}},
            "properties": {"n": {"$ref": "#/$defs/pos"}},
        }))
        .expect("local refs");
        assert!(s.check(&json!({"n": 0})).is_some());
        assert_eq!(s.check(&json!({"n": 1})), None);
    }

    #[test]
    fn oversize_schemas_are_refused() {
        let big: serde_json::Map<String, Value> = (0..5000)
            .map(|i| (format!("field{i}"), json!({"type": "string"})))
            .collect();
        let m = invalid(json!({"properties": big}));
        assert!(m.contains("more than the maximum of 65536 bytes"), "{m}");
    }

    #[test]
    fn boolean_schemas() {
        assert_eq!(
            Schema::compile(json!(true)).expect("true").check(&json!({"a": 1})),
            None
        );
        let f = Schema::compile(json!(false)).expect("false").check(&json!({"a": 1}));
        assert_eq!(f.map(|f| f.listed[0].path.clone()), Some("/".to_string()));
    }
}
