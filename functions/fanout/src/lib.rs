//! The fanout function's handler (placeholder until its issue lands).
