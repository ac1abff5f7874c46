//! Live capture: STUB in the skeleton commit.
