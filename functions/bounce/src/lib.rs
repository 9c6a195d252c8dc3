//! The bounce function's handler (placeholder until its issue lands).
