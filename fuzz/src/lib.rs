//! Shared code of the fuzz targets: the decoding of fuzz bytes into cases ([`decode`]).
//! The oracles, the harness and the independent specifications the targets check against
//! are `vmballoon-testkit`'s, the same the property tests use, so the fuzzers and the
//! property tests check the very same rules.

pub mod decode;
