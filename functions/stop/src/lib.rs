//! The stop function's handler (placeholder until its issue lands).
