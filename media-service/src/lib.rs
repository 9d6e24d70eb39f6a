//! Statuses, encrypted media blobs and profile photos. Filled in by later issues.
