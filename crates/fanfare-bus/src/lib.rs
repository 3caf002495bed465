//! The update bus (in progress).
