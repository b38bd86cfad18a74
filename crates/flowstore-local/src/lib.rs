//! Local and Module storage.
