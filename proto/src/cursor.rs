//! A bounds-checked reader over a request's argument bytes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use zerocopy::FromBytes;

use crate::DecodeError;

/// Reads fixed structs, NUL-terminated names and byte runs from the front of a slice.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes }
    }

    /// Copies a `T` out of the next `size_of::<T>()` bytes (no alignment needed).
    pub(crate) fn fixed<T: FromBytes>(&mut self) -> Result<T, DecodeError> {
        let (value, rest) = T::read_from_prefix(self.bytes).map_err(|_| DecodeError::Truncated)?;
        self.bytes = rest;
        Ok(value)
    }

    /// Copies a `T` whose kernel-side size may be smaller than ours (an older minor): takes
    /// `wire_size` bytes, at least `min` of them, and leaves the rest of `T` zeroed.
    pub(crate) fn sized<T: FromBytes + zerocopy::IntoBytes>(
        &mut self,
        wire_size: usize,
    ) -> Result<T, DecodeError> {
        let mut value = T::new_zeroed();
        let dst = value.as_mut_bytes();
        let take = wire_size.min(dst.len());
        let src = self.take(wire_size)?;
        dst[..take].copy_from_slice(&src[..take]);
        Ok(value)
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// A NUL-terminated name, without its NUL. Empty names and names with no NUL are errors.
    pub(crate) fn name(&mut self) -> Result<&'a OsStr, DecodeError> {
        let end = self.bytes.iter().position(|&b| b == 0).ok_or(DecodeError::BadName)?;
        let name = &self.bytes[..end];
        self.bytes = &self.bytes[end + 1..];
        if name.is_empty() {
            return Err(DecodeError::BadName);
        }
        Ok(OsStr::from_bytes(name))
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}
