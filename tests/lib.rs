//! Integration tests live beside this file, one `[[test]]` each in Cargo.toml.
