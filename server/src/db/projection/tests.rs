//! Unit tests of projections.
