//! The api function's handler (placeholder until its issue lands).
