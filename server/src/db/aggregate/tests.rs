//! Unit tests of the pipeline stages.
