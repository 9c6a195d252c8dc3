//! The store function's handler (placeholder until its issue lands).
