//! Shared code of the fuzz targets: the oracles of `tests/support/` (included by path, so
//! the fuzzers and the property tests check the very same rules), the driver's `memsnap`
//! parsers (`src/memsnap.rs`, included by path: the root package is a `cdylib`, which a
//! fuzz target cannot link to), and the decoding of fuzz bytes into cases ([`decode`]).
#![allow(dead_code, missing_docs, clippy::all)]

#[path = "../../tests/support/channel.rs"]
pub mod channel;
#[path = "../../tests/support/hostile.rs"]
pub mod hostile;
#[path = "../../tests/support/memsnap_spec.rs"]
pub mod memsnap_spec;

pub mod decode;
