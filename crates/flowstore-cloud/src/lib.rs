//! S3, Azure Blob and GCS flow storage for flowstore.
//!
//! Part of flowstore; see the workspace README.
