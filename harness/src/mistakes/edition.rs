//! Which tree this harness was built from. `cilab handout` rewrites this file.

/// The course author's tree: the mistake corpus is here.
pub const HANDOUT: bool = false;
