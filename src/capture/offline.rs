//! Offline capture files (skeleton).
