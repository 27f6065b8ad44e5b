//! The query matcher: compiled filters, element filters ($elemMatch, $pull) and sort orders.
//! (temporary API stub while the matcher is being written)

use std::cmp::Ordering;

use serde_json::Value;

use crate::db::DbError;

pub struct Filter {
    _empty: bool,
}

impl Filter {
    pub fn parse(query: &Value) -> Result<Filter, DbError> {
        if !query.is_object() {
            return Err(DbError::InvalidParam("query must be a JSON object".into()));
        }
        Ok(Filter { _empty: true })
    }
    pub fn matches(&self, _doc: &Value) -> bool {
        true
    }
    pub fn id_equals(&self) -> Option<&str> {
        None
    }
    pub fn equality_fields(&self) -> Vec<(String, Value)> {
        Vec::new()
    }
    pub fn is_empty(&self) -> bool {
        true
    }
}

pub struct ElementFilter {
    _v: Value,
}

impl ElementFilter {
    pub fn parse(cond: &Value) -> Result<ElementFilter, DbError> {
        Ok(ElementFilter { _v: cond.clone() })
    }
    pub fn matches(&self, value: &Value) -> bool {
        crate::db::value::values_equal(&self._v, value)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

pub struct Sort {
    fields: Vec<(String, Direction)>,
}

impl Sort {
    pub fn new(fields: Vec<(String, Direction)>) -> Sort {
        Sort { fields }
    }
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
    pub fn compare(&self, _a: &Value, _b: &Value) -> Ordering {
        Ordering::Equal
    }
}
