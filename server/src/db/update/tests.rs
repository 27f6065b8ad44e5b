//! Unit tests of update specs.
