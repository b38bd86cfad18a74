//! Docker image flow storage for flowstore.
//!
//! Part of flowstore; see the workspace README.
