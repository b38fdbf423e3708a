//! Wire-compatibility suite: real clients against the real gateway binary.
